/* The mig-manager's Kubernetes API server client: GET a Node and merge
 * PATCH its labels over HTTPS with a bearer token, through libcurl (loaded
 * with dlopen on first use, so its TLS stack is no link-time dependency of
 * every gpuslice binary); the replies are parsed with jansson. */
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CURL_DISABLE_TYPECHECK /* its macros would hide the table's calls */
#include <curl/curl.h>
#include <jansson.h>

#include "k8s/apiserver_int.h"

#define API_REPLY_MAX (4u << 20) /* a Node object is a few KiB */
#define API_TOKEN_MAX 16384
#define API_TIMEOUT_MS 10000L

/* The libcurl functions used, by name; one list makes table and loader. */
#define CURL_FUNCS(XX)                                                         \
  XX(curl_global_init)                                                         \
  XX(curl_easy_init)                                                           \
  XX(curl_easy_cleanup)                                                        \
  XX(curl_easy_reset)                                                          \
  XX(curl_easy_setopt)                                                         \
  XX(curl_easy_perform)                                                        \
  XX(curl_easy_getinfo)                                                        \
  XX(curl_easy_strerror)                                                       \
  XX(curl_slist_append)                                                        \
  XX(curl_slist_free_all)

static struct {
#define XX(name) __typeof__(name) *name;
  CURL_FUNCS(XX)
#undef XX
} cu;

static int curl_load(gs_error_t *err) {
  static void *lib;
  if (lib)
    return GS_OK;
  void *h = dlopen("libcurl.so.4", RTLD_NOW | RTLD_LOCAL);
  if (!h)
    return gs_error_set(err, GS_EUNSUPPORTED,
                        "libcurl.so.4 could not be loaded (%s): install "
                        "libcurl4 to talk to the API server",
                        dlerror());
#define XX(name)                                                               \
  if (!(*(void **)&cu.name = dlsym(h, #name))) {                               \
    dlclose(h);                                                                \
    return gs_error_set(err, GS_EUNSUPPORTED, "libcurl.so.4 lacks %s", #name); \
  }
  CURL_FUNCS(XX)
#undef XX
  lib = h;
  return GS_OK;
}

struct gs__k8s_api_s {
  CURL *curl;
  char url[1024]; /* SERVER/api/v1/nodes/NODE */
  char token_file[4096];
  char ca_file[4096];
  int token_needed; /* given explicitly: a missing file is an error */
};

typedef struct reply_s {
  char *data;
  size_t len;
  int over;
} reply_t;

static size_t on_data(char *p, size_t sz, size_t n, void *ud) {
  reply_t *r = ud;
  size_t add = sz * n;
  if (r->len + add > API_REPLY_MAX) {
    r->over = 1;
    return 0; /* curl stops with CURLE_WRITE_ERROR */
  }
  char *d = realloc(r->data, r->len + add + 1);
  if (!d)
    return 0;
  memcpy(d + r->len, p, add);
  r->len += add;
  d[r->len] = '\0';
  r->data = d;
  return add;
}

/* Node names are DNS subdomains: nothing in them needs escaping. */
static int node_name_ok(const char *s) {
  if (!*s || strlen(s) > 253)
    return 0;
  for (; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '-' ||
          *s == '.'))
      return 0;
  return 1;
}

int gs__k8s_api_create(gs__k8s_api_t **out, const char *server,
                       const char *token_file, const char *ca_file,
                       const char *node, gs_error_t *err) {
  *out = NULL;
  if (!node || !node_name_ok(node))
    return gs_error_set(err, GS_EINVAL,
                        "node name '%s' is not a DNS subdomain name",
                        node ? node : "");
  size_t n = strlen(server);
  while (n && server[n - 1] == '/')
    n--;
  if (n + strlen(node) + 16 >= sizeof((gs__k8s_api_t *)0)->url)
    return gs_error_set(err, GS_EINVAL, "API server URL too long");
  int rc = curl_load(err);
  if (rc != GS_OK)
    return rc;
  if (cu.curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
    return gs_error_set(err, GS_ESYSTEM, "libcurl could not be initialised");
  gs__k8s_api_t *api = calloc(1, sizeof *api);
  if (!api || !(api->curl = cu.curl_easy_init())) {
    free(api);
    return gs_error_set(err, GS_ENOMEM, "out of memory (API client)");
  }
  snprintf(api->url, sizeof api->url, "%.*s/api/v1/nodes/%s", (int)n, server,
           node);
  api->token_needed = token_file != NULL;
  snprintf(api->token_file, sizeof api->token_file, "%s",
           token_file ? token_file : GS_K8S_SA_TOKEN);
  snprintf(api->ca_file, sizeof api->ca_file, "%s", ca_file ? ca_file : "");
  *out = api;
  return GS_OK;
}

void gs__k8s_api_destroy(gs__k8s_api_t *api) {
  if (!api)
    return;
  cu.curl_easy_cleanup(api->curl);
  free(api);
}

/* "Authorization: Bearer TOKEN" in hdr, or "" when there is no token. */
static int auth_header(const gs__k8s_api_t *api, char *hdr, size_t size,
                       gs_error_t *err) {
  hdr[0] = '\0';
  FILE *f = fopen(api->token_file, "r");
  if (!f) {
    if (errno == ENOENT && !api->token_needed)
      return GS_OK;
    return gs_error_sys(err, errno, "service account token %s",
                        api->token_file);
  }
  char tok[API_TOKEN_MAX];
  size_t n = fread(tok, 1, sizeof tok - 1, f);
  int full = n == sizeof tok - 1 && fgetc(f) != EOF;
  fclose(f);
  if (full)
    return gs_error_set(err, GS_ELIMIT, "token %s is over %u bytes",
                        api->token_file, API_TOKEN_MAX - 1);
  while (n && (tok[n - 1] == '\n' || tok[n - 1] == '\r' || tok[n - 1] == ' '))
    n--;
  tok[n] = '\0';
  if (n)
    snprintf(hdr, size, "Authorization: Bearer %s", tok);
  return GS_OK;
}

/* The API server's Status message, when the reply is one. */
static void status_message(const reply_t *r, char *msg, size_t size) {
  msg[0] = '\0';
  json_t *j = r->data ? json_loads(r->data, 0, NULL) : NULL;
  const char *m = json_string_value(json_object_get(j, "message"));
  if (m)
    snprintf(msg, size, ": %s", m);
  json_decref(j);
}

/* One request; a 2xx reply's body in *r (the caller frees r->data). */
static int request(gs__k8s_api_t *api, const char *method, const char *body,
                   reply_t *r, gs_error_t *err) {
  char auth[API_TOKEN_MAX + 32], cerr[CURL_ERROR_SIZE] = "", msg[512];
  struct curl_slist *hdrs = NULL;
  long status = 0;
  CURL *c = api->curl;
  int rc = auth_header(api, auth, sizeof auth, err);
  if (rc != GS_OK)
    goto out;
  hdrs = cu.curl_slist_append(hdrs, "Accept: application/json");
  if (body)
    hdrs = cu.curl_slist_append(hdrs,
                                "Content-Type: application/merge-patch+json");
  if (auth[0])
    hdrs = cu.curl_slist_append(hdrs, auth);
  cu.curl_easy_reset(c);
  cu.curl_easy_setopt(c, CURLOPT_URL, api->url);
  cu.curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
  cu.curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
  cu.curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  cu.curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, API_TIMEOUT_MS);
  cu.curl_easy_setopt(c, CURLOPT_ERRORBUFFER, cerr);
  cu.curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
  cu.curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
  if (api->ca_file[0])
    cu.curl_easy_setopt(c, CURLOPT_CAINFO, api->ca_file);
  if (body)
    cu.curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
  CURLcode cc = cu.curl_easy_perform(c);
  if (cc != CURLE_OK) {
    rc = r->over ? gs_error_set(err, GS_ELIMIT, "%s %s: reply over %u bytes",
                                method, api->url, API_REPLY_MAX)
                 : gs_error_set(err, GS_ESYSTEM, "%s %s: %s", method, api->url,
                                cerr[0] ? cerr : cu.curl_easy_strerror(cc));
    goto out;
  }
  cu.curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  if (status < 200 || status > 299) {
    status_message(r, msg, sizeof msg);
    rc = gs_error_set(err,
                      status == 401 || status == 403 ? GS_EPERM
                      : status == 404                ? GS_ENOTFOUND
                                                     : GS_ESYSTEM,
                      "%s %s: HTTP %ld%s", method, api->url, status, msg);
  }
out:
  cu.curl_slist_free_all(hdrs);
  return rc;
}

int gs__k8s_api_label_get(gs__k8s_api_t *api, const char *key, char *value,
                          size_t size, gs_error_t *err) {
  reply_t r = {0};
  json_t *node = NULL;
  json_error_t je;
  int rc = request(api, "GET", NULL, &r, err);
  if (rc != GS_OK)
    goto out;
  node = json_loads(r.data ? r.data : "", 0, &je);
  json_t *labels = json_object_get(json_object_get(node, "metadata"), "labels");
  json_t *v = json_object_get(labels, key);
  if (!json_is_object(node)) {
    rc = gs_error_set(err, GS_EPARSE, "GET %s: not a JSON object: %s", api->url,
                      je.text);
  } else if (!v) {
    rc = 0;
  } else if (!json_is_string(v)) {
    rc = gs_error_set(err, GS_EPARSE, "GET %s: label %s is not a string",
                      api->url, key);
  } else if (strlen(json_string_value(v)) >= size) {
    rc = gs_error_set(err, GS_ELIMIT, "GET %s: label %s is longer than %zu",
                      api->url, key, size - 1);
  } else {
    snprintf(value, size, "%s", json_string_value(v));
    rc = 1;
  }
out:
  json_decref(node);
  free(r.data);
  return rc == 1 || rc == 0 ? rc : -rc;
}

int gs__k8s_api_labels_patch(gs__k8s_api_t *api, const char *const *keys,
                             const char *const *values, size_t n,
                             gs_error_t *err) {
  reply_t r = {0};
  char *body = NULL;
  int rc = GS_ENOMEM;
  json_t *labels = json_object();
  json_t *patch = json_pack("{s:{s:o}}", "metadata", "labels", labels);
  for (size_t i = 0; labels && i < n; i++)
    if (json_object_set_new(labels, keys[i], json_string(values[i])) != 0)
      goto out;
  if (!patch || !(body = json_dumps(patch, JSON_COMPACT)))
    goto out;
  rc = request(api, "PATCH", body, &r, err);
out:
  if (rc == GS_ENOMEM)
    gs_error_set(err, GS_ENOMEM, "out of memory (label patch)");
  json_decref(patch);
  free(body);
  free(r.data);
  return rc;
}

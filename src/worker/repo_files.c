/* Model files in a load request, as Triton's model repository extension
 * has them: "file:1/model.onnx" (base64 over HTTP, bytes over gRPC) with a
 * "config" override. They are written under a temporary model directory,
 * the model loads from there (into memory), and the directory goes. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "worker/repo_files.h"
#include "worker/shm.h" /* gs__shm_base64_decode */

#define NAME_MAX_BYTES 255 /* one path component, as Linux's NAME_MAX */
#define POLL_FAILED "failed to poll from model repository"

bool gs__repo_has_files(json_t *params) {
  const char *key;
  json_t *v;
  json_object_foreach(params, key, v) {
    if (!strncmp(key, "file:", 5))
      return true;
  }
  return false;
}

char *gs__base64_encode(const uint8_t *data, size_t len) {
  static const char abc[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  char *out = malloc((len + 2) / 3 * 4 + 1), *p = out;
  for (size_t i = 0; out && i < len; i += 3) {
    uint32_t w = (uint32_t)data[i] << 16;
    w |= i + 1 < len ? (uint32_t)data[i + 1] << 8 : 0;
    w |= i + 2 < len ? data[i + 2] : 0;
    *p++ = abc[w >> 18 & 63];
    *p++ = abc[w >> 12 & 63];
    *p++ = i + 1 < len ? abc[w >> 6 & 63] : '=';
    *p++ = i + 2 < len ? abc[w & 63] : '=';
  }
  if (out)
    *p = '\0';
  return out;
}

/* A relative path of components that stay in the model directory: 400
 * otherwise; 500 (as Triton, which fails to write it) for a component
 * longer than NAME_MAX. */
static int check_path(const char *name, const char *key, gs_error_t *err) {
  const char *path = key + 5;
  bool bad = !path[0] || path[0] == '/';
  for (const char *c = path; !bad && *c;) {
    size_t n = strcspn(c, "/");
    if (n > NAME_MAX_BYTES)
      return gs_error_set(err, GS_ESYSTEM,
                          "failed to load '%.128s', " POLL_FAILED
                          ": file parameter '%.64s...' has a path component "
                          "longer than %d bytes",
                          name, key, NAME_MAX_BYTES),
             500;
    bad = n == 0 || (n == 1 && c[0] == '.') ||
          (n == 2 && c[0] == '.' && c[1] == '.');
    c += n + (c[n] == '/');
  }
  if (bad)
    return gs_error_set(err, GS_EINVAL,
                        "failed to load '%.128s': invalid file parameter "
                        "'%.160s': the path must stay within the model "
                        "directory",
                        name, key),
           400;
  return 200;
}

/* Writes data as dir/path, making the directories on the way. */
static int write_file(const char *dir, const char *path, const uint8_t *data,
                      size_t len, gs_error_t *err) {
  char full[4400];
  if (snprintf(full, sizeof full, "%s/%s", dir, path) >= (int)sizeof full)
    return gs_error_set(err, GS_ELIMIT, "file path '%.64s...' is too long",
                        path);
  for (char *s = strchr(full + strlen(dir) + 1, '/'); s;
       s = strchr(s + 1, '/')) {
    *s = '\0';
    int made = mkdir(full, 0700);
    *s = '/';
    if (made != 0 && errno != EEXIST)
      return gs_error_sys(err, errno, "cannot make a directory for '%.160s'",
                          path);
  }
  int fd = open(full, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  size_t done = 0;
  while (fd >= 0 && done < len) {
    ssize_t w = write(fd, data + done, len - done);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      break;
    done += (size_t)w;
  }
  int rc = fd < 0 || done < len
               ? gs_error_sys(err, errno, "cannot write '%.160s'", path)
               : GS_OK;
  if (fd >= 0)
    close(fd);
  return rc;
}

/* One "file:PATH" parameter into dir. The HTTP status, 200 when written. */
static int put_file(const char *dir, const char *name, const char *key,
                    json_t *v, gs_error_t *err) {
  int status = check_path(name, key, err);
  if (status != 200)
    return status;
  if (!json_is_string(v))
    return gs_error_set(err, GS_EINVAL,
                        "failed to load '%.128s': file parameter '%.160s' "
                        "must hold the file's content in base64",
                        name, key),
           400;
  size_t len = json_string_length(v), n = 0;
  uint8_t *data = malloc(len / 4 * 3 + 1);
  if (!data)
    return gs_error_set(err, GS_ENOMEM, "out of memory"), 500;
  int rc = gs__shm_base64_decode(json_string_value(v), len, data,
                                 len / 4 * 3 + 1, &n, err);
  if (rc != GS_OK) {
    gs_error_prefix(
        err, "failed to load '%.128s': file parameter '%.160s': ", name, key);
    free(data);
    return 400;
  }
  rc = write_file(dir, key + 5, data, n, err);
  free(data);
  if (rc != GS_OK)
    gs_error_prefix(err, "failed to load '%.128s', " POLL_FAILED ": ", name);
  return rc == GS_OK ? 200 : 500;
}

/* Messages name the files as the request did ("file:1/model.onnx"), not
 * by the temporary directory they were written to. */
static void name_files(char *msg, const char *dir) {
  size_t n = strlen(dir);
  for (char *at = strstr(msg, dir); at && at[n] == '/'; at = strstr(at, dir)) {
    memcpy(at, "file:", 5);
    memmove(at + 5, at + n + 1, strlen(at + n + 1) + 1);
  }
}

static int remove_entry(const char *path, const struct stat *st, int flag,
                        struct FTW *ftw) {
  (void)st;
  (void)flag;
  (void)ftw;
  remove(path);
  return 0;
}

int gs__repo_load_files(gs__repo_t *repo, const char *name, json_t *params,
                        const char *config, size_t config_len,
                        gs_error_t *err) {
  if (!config)
    return gs_error_set(err, GS_EINVAL,
                        "failed to load '%.128s': Load parameter 'config' "
                        "must be specified for model file override",
                        name),
           400;
  if (!gs__repo_valid_name(name))
    return gs_error_set(err, GS_EINVAL,
                        "failed to load '%.128s': not a model name (letters, "
                        "digits, '_', '.', '-')",
                        name),
           400;
  char dir[] = P_tmpdir "/gpuslice-load-XXXXXX";
  if (!mkdtemp(dir))
    return gs_error_sys(err, errno,
                        "failed to load '%.128s', " POLL_FAILED
                        ": cannot make a directory for its files",
                        name),
           500;
  int status = 200;
  const char *key;
  json_t *v;
  json_object_foreach(params, key, v) {
    if (status == 200 && !strncmp(key, "file:", 5))
      status = put_file(dir, name, key, v, err);
  }
  if (status == 200 &&
      gs__repo_load_from(repo, name, dir, config, config_len, err) != GS_OK) {
    status = 400;
    name_files(err->msg, dir);
  }
  /* the model is in memory now (label files too): the files can go */
  nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
  return status;
}

/* The CLI's container and Kubernetes verbs (cmd_cdi.c, cmd_k8s.c) and the
 * CDI refresh the layout verbs run after a change. */
#ifndef GPUSLICE_CMD_K8S_H
#define GPUSLICE_CMD_K8S_H

#include "cli.h"
#include "gpuslice/k8s.h"

/* The inventory options of this run (the host hook's path and args). */
void cli_k8s_options(cli_t *cli, gs_k8s_options_t *opt);
int cli_cdi_generate(cli_t *cli, const char *path, gs_cdi_format_t format,
                     gs_error_t *err);
/* Rewrites $GPUSLICE_CDI_DIR/gpuslice.json when that is set; CLI_OK when
 * not. */
int cli_cdi_refresh(cli_t *cli);

/* A k8s verb's log line on stderr: "TIME gpuslice NAME: line" (data: the
 * name; NULL: device-plugin). */
void cli_k8s_log(void *data, const char *line);

/* What `gpuslice serve` on this state directory says of its workers, asked
 * once per tick through STATE_DIR/serve.json (as `serve --status` finds
 * it); no serve running: nothing is known, nothing is down. The device
 * plugin's and the metrics' health (their tick and worker_down). */
typedef struct cli_serve_health_s {
  const char *state_dir;
  json_t *workers; /* the last answer's "workers", or NULL */
} cli_serve_health_t;
void cli_serve_tick(void *data);
bool cli_serve_worker_down(void *data, const char *uuid, char *why,
                           size_t size);

int cmd_cdi(cli_t *cli, int argc, char **argv);
int cmd_k8s(cli_t *cli, int argc, char **argv);
int cmd_k8s_metrics(cli_t *cli, int argc, char **argv);

#endif

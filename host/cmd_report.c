// `lethe report`: renders report.html again from a saved eval.json (what `lethe eval` writes
// beside it), e.g. after editing its title or notes, or with a newer lethe.
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "json.h"
#include "report.h"
#include "strbuf.h"

int cmd_report(int argc, char **argv) {
    CliOption opts[] = {
        {"--out", NULL, 0, "output HTML (default: report.html beside EVAL.json)"},
    };
    const int n = sizeof opts / sizeof opts[0];
    const char *pos[1];
    int npos;
    Err e = {{0}};
    int rc = cli_parse(argc, argv, opts, n, pos, 1, &npos, &e);
    if (rc == 1) {
        cli_usage("report", "EVAL.json [--out report.html]",
                  "Renders the self-contained comparison report (tables, SVG charts, training\n"
                  "curves; no scripts, no external files) from an eval.json of `lethe eval`.\n"
                  "Relative metrics_jsonl paths are read from the directory of EVAL.json.",
                  opts, n);
        return 0;
    }
    if (rc) return cli_fail("report", &e);
    if (npos != 1) {
        err_set(&e, "give one eval.json file (see --help)");
        return cli_fail("report", &e);
    }
    const char *eval_path = pos[0];
    // dirname may modify its argument and return a pointer into it
    char *copy = strdup(eval_path);
    if (!copy) {
        err_set(&e, "out of memory");
        return cli_fail("report", &e);
    }
    const char *eval_dir = dirname(copy);
    StrBuf out = {0};
    const char *out_path = cli_get(opts, n, "--out");
    if (!out_path) {
        sb_printf(&out, "%s/report.html", eval_dir);
        out_path = out.data;
    }
    rc = 1;
    JsonValue *eval = NULL;
    if (!out_path) {
        err_set(&e, "out of memory");
        goto done;
    }
    eval = json_parse_file(eval_path, JSON_FILE_SINGLE, &e);
    if (!eval) goto done;
    if (report_write_html(eval, eval_dir, out_path, &e)) {
        // the file's own mistakes name it; a failed write already names out_path
        if (strncmp(e.msg, out_path, strlen(out_path)) != 0) err_prefix(&e, "%s", eval_path);
        goto done;
    }
    printf("%s\n", out_path);
    rc = 0;
done:
    if (rc) cli_fail("report", &e);
    json_free(eval);
    sb_free(&out);
    free(copy);
    return rc;
}

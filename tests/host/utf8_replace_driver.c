// Test driver: each stdin line is hex bytes; prints the hex of utf8_replace_invalid() of them.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval.h"

int main(void) {
    char line[65536];
    while (fgets(line, sizeof line, stdin)) {
        size_t n = strlen(line) / 2, len = 0;
        char *bytes = malloc(n + 1);
        for (size_t i = 0; i < n; i++) {
            unsigned v;
            if (sscanf(line + 2 * i, "%2x", &v) != 1) break;
            bytes[len++] = (char)v;
        }
        char *out = utf8_replace_invalid(bytes, len);
        if (!out) return 1;
        for (const unsigned char *p = (const unsigned char *)out; *p; p++) printf("%02x", *p);
        printf("\n");
        free(out);
        free(bytes);
    }
    return 0;
}

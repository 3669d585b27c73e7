// SHA-256 against the FIPS 180-4 example vectors, chunked updates, and whole-file digests.
// Usage: test_sha256 <case> <tmpdir>
#include "ckpt_test_util.h"

#include <sys/stat.h>

static void hex_of(const void *data, size_t n, char hex[65]) {
    Sha256 s;
    uint8_t d[32];
    sha256_init(&s);
    sha256_update(&s, data, n);
    sha256_final(&s, d);
    sha256_hex(d, hex);
}

static int known_vectors(void) {
    static const struct { const char *in; const char *hex; } v[] = {
        {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
        {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
        {"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqr"
         "lmnopqrsmnopqrstnopqrstu",
         "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"},
    };
    char hex[65];
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        hex_of(v[i].in, strlen(v[i].in), hex);
        if (strcmp(hex, v[i].hex) != 0) {
            fprintf(stderr, "sha256(\"%s\") = %s, expected %s\n", v[i].in, hex, v[i].hex);
            g_failures++;
        }
    }
    // One million 'a' (FIPS 180-2 appendix B.3), fed in uneven pieces across block boundaries.
    char *a = malloc(1000000);
    memset(a, 'a', 1000000);
    Sha256 s;
    uint8_t d[32];
    sha256_init(&s);
    size_t pos = 0, step = 1;
    while (pos < 1000000) {
        size_t k = step < 1000000 - pos ? step : 1000000 - pos;
        sha256_update(&s, a + pos, k);
        pos += k;
        step = step * 3 % 257 + 1;
    }
    sha256_final(&s, d);
    sha256_hex(d, hex);
    CHECK(strcmp(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0") == 0);
    free(a);
    return test_done("sha256_matches_fips_180_4_vectors");
}

static int chunking_and_files(const char *dir) {
    // Every split point of a 200-byte message (crossing the 55/56/64-byte padding edges)
    // gives the one-shot digest.
    uint8_t msg[200];
    for (int i = 0; i < 200; i++) msg[i] = (uint8_t)(rng_u64() >> 56);
    for (size_t len = 0; len <= 200; len += 1) {
        char want[65], got[65];
        hex_of(msg, len, want);
        for (size_t cut = 0; cut <= len; cut += 7) {
            Sha256 s;
            uint8_t d[32];
            sha256_init(&s);
            sha256_update(&s, msg, cut);
            sha256_update(&s, msg + cut, len - cut);
            sha256_final(&s, d);
            sha256_hex(d, got);
            if (strcmp(want, got) != 0) {
                fprintf(stderr, "split %zu/%zu differs\n", cut, len);
                g_failures++;
            }
        }
    }
    char p[4096], hex[65];
    Err e;
    join_path(p, sizeof p, dir, "sha256_abc.txt");
    CHECK(write_text_file(p, "abc") == 0);
    CHECK_OK(sha256_file(p, hex, &e), &e);
    CHECK(strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") == 0);
    join_path(p, sizeof p, dir, "sha256_no_such_file.bin");
    CHECK_FAILS_WITH(sha256_file(p, hex, &e), &e, "sha256_no_such_file.bin",
                     "No such file or directory");
    return test_done("sha256_chunked_updates_and_files_match_one_shot_digest");
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s vectors|chunking <tmpdir>\n", argv[0]);
        return 2;
    }
    if (strcmp(argv[1], "vectors") == 0) return known_vectors();
    // The directory is shared with the checkpoint tests; on a fresh build tree this test may be
    // the first to run, so it creates it too (its absence made the file case fail at random).
    mkdir(argv[2], 0755);
    if (strcmp(argv[1], "chunking") == 0) return chunking_and_files(argv[2]);
    fprintf(stderr, "unknown case %s\n", argv[1]);
    return 2;
}

/* Reference G.722 coder for proxy/tests/g722_spandsp.rs: spandsp's implementation (the one
 * spandsp's own test suite checks against the ITU-T G.722 test vectors), used here as a test
 * oracle only (spandsp is LGPL; callmask never links it).
 *   g722_ref encode   IN.s16(16 kHz) OUT.g722
 *   g722_ref decode16 IN.g722 OUT.s16(16 kHz)
 *   g722_ref decode8  IN.g722 OUT.s16(8 kHz, low band)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <spandsp.h>

static long slurp(const char *path, unsigned char **buf) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    *buf = malloc(n > 0 ? n : 1);
    if (fread(*buf, 1, n, f) != (size_t)n) { fclose(f); return -1; }
    fclose(f);
    return n;
}

int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: g722_ref encode|decode16|decode8 IN OUT\n"); return 64; }
    unsigned char *in;
    long n = slurp(argv[2], &in);
    if (n < 0) { perror(argv[2]); return 66; }
    FILE *out = fopen(argv[3], "wb");
    if (!out) { perror(argv[3]); return 73; }
    if (strcmp(argv[1], "encode") == 0) {
        g722_encode_state_t *s = g722_encode_init(NULL, 64000, 0);
        int samples = n / 2;
        uint8_t *code = malloc(samples);
        int m = g722_encode(s, code, (const int16_t *)in, samples);
        fwrite(code, 1, m, out);
    } else {
        int opts = strcmp(argv[1], "decode8") == 0 ? G722_SAMPLE_RATE_8000 : 0;
        g722_decode_state_t *s = g722_decode_init(NULL, 64000, opts);
        int16_t *pcm = malloc(n * 2 * sizeof(int16_t));
        int m = g722_decode(s, pcm, in, n);
        fwrite(pcm, sizeof(int16_t), m, out);
    }
    fclose(out);
    return 0;
}

/* Read-bandwidth probe and a plain fused C loop, the two non-library baselines of the benchmark
   (built at benchmark time: gcc -O3 -march=x86-64-v3 -shared -fPIC -pthread).

   probe: reads every byte the TRM kernel reads (the two float32 arrays and the uint8 mask of a
   padded [rows, cols] batch, row by row, three streams at once, as the kernel does) and folds them
   into a checksum so the compiler cannot drop the loads. Same thread split as the kernel (rows).

   fused: the TRM default in one scalar pass per row, the way one would write it in C: delta,
   max k2, sum of expm1f(delta) - delta in double, count, keep. */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    const float *a, *b;
    const uint8_t *m;
    int64_t rows, cols, first, last;
    double tau_max, tau_avg;
    uint8_t *keep;
    uint64_t checksum;
} job_t;

static void *probe_rows(void *arg) {
    job_t *j = arg;
    uint64_t acc = 0;
    for (int64_t i = j->first; i < j->last; i++) {
        const uint32_t *a = (const uint32_t *)(j->a + i * j->cols), *b = (const uint32_t *)(j->b + i * j->cols);
        const uint8_t *m = j->m + i * j->cols;
        uint32_t x = 0;
        for (int64_t t = 0; t < j->cols; t++) x ^= a[t] ^ b[t] ^ m[t];
        acc += x;
    }
    j->checksum = acc;
    return 0;
}

static void *fused_rows(void *arg) {
    job_t *j = arg;
    for (int64_t i = j->first; i < j->last; i++) {
        const float *a = j->a + i * j->cols, *b = j->b + i * j->cols;
        const uint8_t *m = j->m + i * j->cols;
        float max_k2 = 0.0f;
        double sum_k3 = 0.0;
        int64_t count = 0;
        for (int64_t t = 0; t < j->cols; t++) {
            if (!m[t]) continue;
            float d = a[t] - b[t];
            float k2 = 0.5f * d * d;
            if (k2 > max_k2) max_k2 = k2;
            sum_k3 += (double)(expm1f(d) - d);
            count++;
        }
        j->keep[i] = count == 0 || (max_k2 <= j->tau_max && sum_k3 / (double)count <= j->tau_avg);
    }
    return 0;
}

static uint64_t run(void *(*body)(void *), const float *a, const float *b, const uint8_t *m, int64_t rows,
                    int64_t cols, uint8_t *keep, int threads) {
    job_t jobs[64];
    pthread_t ids[64];
    if (threads < 1) threads = 1;
    if (threads > 64) threads = 64;
    for (int w = 0; w < threads; w++) {
        jobs[w] = (job_t){a, b, m, rows, cols, rows * w / threads, rows * (w + 1) / threads, 0.1, 0.002, keep, 0};
        if (w > 0) pthread_create(&ids[w], 0, body, &jobs[w]);
    }
    body(&jobs[0]);
    uint64_t sum = jobs[0].checksum;
    for (int w = 1; w < threads; w++) {
        pthread_join(ids[w], 0);
        sum += jobs[w].checksum;
    }
    return sum;
}

uint64_t probe(const float *a, const float *b, const uint8_t *m, int64_t rows, int64_t cols, int threads) {
    return run(probe_rows, a, b, m, rows, cols, 0, threads);
}

void fused(const float *a, const float *b, const uint8_t *m, int64_t rows, int64_t cols, uint8_t *keep, int threads) {
    run(fused_rows, a, b, m, rows, cols, keep, threads);
}

/* probe_streams: the read probe for any set of inputs. Reads `n` byte streams, each of `rows`
   rows of row_bytes[k] bytes (row i of stream k starts at streams[k] + i * row_bytes[k]; a packed
   1-D array is one stream cut into equal rows), row by row, streams one after the other within a
   row, folding 8-byte words into a checksum. Same thread split as the kernel (rows). */
typedef struct {
    const uint8_t *const *streams;
    const int64_t *row_bytes;
    int n;
    int64_t first, last;
    uint64_t checksum;
} stream_job_t;

static void *probe_stream_rows(void *arg) {
    stream_job_t *j = arg;
    uint64_t acc = 0;
    for (int64_t i = j->first; i < j->last; i++) {
        for (int k = 0; k < j->n; k++) {
            const uint8_t *row = j->streams[k] + i * j->row_bytes[k];
            int64_t words = j->row_bytes[k] / 8;
            uint64_t x = 0;
            for (int64_t w = 0; w < words; w++) {
                uint64_t v;
                memcpy(&v, row + 8 * w, 8);
                x ^= v;
            }
            for (int64_t b = 8 * words; b < j->row_bytes[k]; b++) x ^= row[b];
            acc += x;
        }
    }
    j->checksum = acc;
    return 0;
}

uint64_t probe_streams(const void *const *streams, const int64_t *row_bytes, int n, int64_t rows, int threads) {
    stream_job_t jobs[64];
    pthread_t ids[64];
    if (threads < 1) threads = 1;
    if (threads > 64) threads = 64;
    for (int w = 0; w < threads; w++) {
        jobs[w] = (stream_job_t){(const uint8_t *const *)streams, row_bytes, n, rows * w / threads,
                                 rows * (w + 1) / threads, 0};
        if (w > 0) pthread_create(&ids[w], 0, probe_stream_rows, &jobs[w]);
    }
    probe_stream_rows(&jobs[0]);
    uint64_t sum = jobs[0].checksum;
    for (int w = 1; w < threads; w++) {
        pthread_join(ids[w], 0);
        sum += jobs[w].checksum;
    }
    return sum;
}

/* probe_copy: the read+write probe of a call that reads `n_in` streams and writes `n_out`, all of
   `rows` rows of row_bytes bytes each per stream (as probe_streams cuts them), row by row: every
   8-byte word of the outputs is written from the XOR of the inputs' words at the same offset, so
   each input byte is read once and each output byte written once, with no other arithmetic.
   Inputs of different element sizes are read at their own offsets (word w of each stream). */
typedef struct {
    const uint8_t *const *in;
    const int64_t *in_row_bytes;
    int n_in;
    uint8_t *const *out;
    const int64_t *out_row_bytes;
    int n_out;
    int64_t first, last;
} copy_job_t;

static void *probe_copy_rows(void *arg) {
    copy_job_t *j = arg;
    for (int64_t i = j->first; i < j->last; i++) {
        int64_t words = 0;
        for (int k = 0; k < j->n_out; k++)
            if (j->out_row_bytes[k] / 8 > words) words = j->out_row_bytes[k] / 8;
        for (int k = 0; k < j->n_in; k++)
            if (j->in_row_bytes[k] / 8 > words) words = j->in_row_bytes[k] / 8;
        for (int64_t w = 0; w < words; w++) {
            uint64_t x = 0;
            for (int k = 0; k < j->n_in; k++) {
                if (8 * w + 8 > j->in_row_bytes[k]) continue;
                uint64_t v;
                memcpy(&v, j->in[k] + i * j->in_row_bytes[k] + 8 * w, 8);
                x ^= v;
            }
            for (int k = 0; k < j->n_out; k++) {
                if (8 * w + 8 > j->out_row_bytes[k]) continue;
                uint64_t v = x + (uint64_t)k;
                memcpy(j->out[k] + i * j->out_row_bytes[k] + 8 * w, &v, 8);
            }
        }
    }
    return 0;
}

void probe_copy(const void *const *in, const int64_t *in_row_bytes, int n_in, void *const *out,
                const int64_t *out_row_bytes, int n_out, int64_t rows, int threads) {
    copy_job_t jobs[64];
    pthread_t ids[64];
    if (threads < 1) threads = 1;
    if (threads > 64) threads = 64;
    for (int w = 0; w < threads; w++) {
        jobs[w] = (copy_job_t){(const uint8_t *const *)in, in_row_bytes, n_in, (uint8_t *const *)out, out_row_bytes,
                               n_out, rows * w / threads, rows * (w + 1) / threads};
        if (w > 0) pthread_create(&ids[w], 0, probe_copy_rows, &jobs[w]);
    }
    probe_copy_rows(&jobs[0]);
    for (int w = 1; w < threads; w++) pthread_join(ids[w], 0);
}

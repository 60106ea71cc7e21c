/* Regression cases of issue 13 (C ABI hardening): argument values that once trapped, aborted,
   stalled or read past an array. Each case runs in a forked child, so a trap or a crash fails
   that case and the others still run. A case passes when the child exits normally with the
   expected status (and, for calls that succeed, the expected output).

   Build and run against any build of the library (release, debug, ASan, TSan):
     cc -std=c99 -Iinclude Tests/cabi/regressions.c -Lpath -ltrmask -Wl,-rpath,path -o r && ./r
   `make test-regressions` runs it against the release and the debug library. */
#define _DEFAULT_SOURCE
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "trmask.h"

/* Each case returns the status of its call, or -1 when an output is wrong. */
typedef trm_status_t (*case_fn)(void);

static trm_batch_t batch_of(int32_t layout, int64_t rows, int64_t cols) {
    trm_batch_t b = {.struct_size = sizeof(trm_batch_t), .layout = layout, .n_rows = rows, .n_cols = cols};
    return b;
}

static trm_options_t default_options(void) {
    trm_options_t o = {.struct_size = sizeof(trm_options_t), .clamp = INFINITY};
    return o;
}

static trm_view_t view(const void *data, int32_t dtype, int64_t stride_row, int64_t stride_col) {
    trm_view_t v = {.data = data, .dtype = dtype, .stride_row = stride_row, .stride_col = stride_col};
    return v;
}

static trm_out_t out(void *data, int64_t stride_row, int64_t stride_col) {
    trm_out_t o = {.data = data, .stride_row = stride_row, .stride_col = stride_col};
    return o;
}

static trm_mask_out_t mask_out(void) {
    trm_mask_out_t o = {.struct_size = sizeof(trm_mask_out_t)};
    return o;
}

static trm_criterion_t criterion(int32_t aggregation, int32_t estimator, double hi) {
    trm_criterion_t c = {.aggregation = aggregation, .estimator = estimator, .lo = -INFINITY, .hi = hi};
    return c;
}

/* `bytes` bytes that end exactly at a PROT_NONE page: a read past the end faults. */
static void *before_guard(size_t bytes) {
    long page = sysconf(_SC_PAGESIZE);
    size_t span = (bytes + (size_t)page - 1) / (size_t)page * (size_t)page;
    char *base = mmap(NULL, span + (size_t)page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) abort();
    if (mprotect(base + span, (size_t)page, PROT_NONE) != 0) abort();
    return base + span - bytes;
}

static const float one_float = 0.5f;
static const int64_t one_length = 1;
static const uint8_t one_byte = 1;

/* --- 1. size arithmetic that overflows before validation -------------------------------------- */

static trm_batch_t huge_padded(int64_t n) {
    trm_batch_t b = batch_of(TRM_LAYOUT_PADDED, n, n);
    b.log_ratio = view(NULL, TRM_DTYPE_F32, 0, 0);
    return b;
}

static trm_status_t token_values_grid_overflow(void) {
    trm_batch_t b = huge_padded(INT64_C(1) << 32);
    trm_options_t o = default_options();
    return trm_token_values(&b, TRM_EST_K3, &o, out(NULL, 0, 0));
}

static trm_status_t importance_weights_grid_overflow(void) {
    trm_batch_t b = huge_padded(INT64_C(1) << 32);
    trm_options_t o = default_options();
    trm_weight_rule_t rule = {TRM_WEIGHT_TOKEN, TRM_WEIGHT_MODE_TRUNCATE, 0, 2};
    return trm_importance_weights(&b, &o, rule, view(NULL, TRM_DTYPE_NONE, 0, 0), out(NULL, 0, 0));
}

static trm_status_t token_keep_grid_overflow(void) {
    trm_batch_t b = huge_padded(INT64_C(1) << 32);
    trm_options_t o = default_options();
    return trm_token_keep(&b, NULL, 0, &o, view(NULL, TRM_DTYPE_U8, 0, 1), out(NULL, 0, 0));
}

static trm_status_t packed_rows_plus_one_overflow(void) {
    trm_batch_t b = batch_of(TRM_LAYOUT_PACKED, INT64_MAX, 0);
    b.log_ratio = view(NULL, TRM_DTYPE_F32, 0, 1);
    b.offsets = view(&one_length, TRM_DTYPE_I64, 0, 0);
    trm_options_t o = default_options();
    trm_mask_out_t m = mask_out();
    return trm_mask(&b, NULL, 0, &o, &m);
}

static trm_status_t metrics_rows_times_criteria_overflow(void) {
    trm_batch_t b = batch_of(TRM_LAYOUT_PADDED, INT64_C(1) << 58, 0);
    b.log_ratio = view(NULL, TRM_DTYPE_F32, 0, 1);
    trm_criterion_t c[64];
    for (int i = 0; i < 64; i++) c[i] = criterion(TRM_AGG_MAX, TRM_EST_K2, 1);
    trm_options_t o = default_options();
    trm_metrics_t metrics;
    memset(&metrics, 0, sizeof metrics);
    metrics.struct_size = sizeof metrics;
    trm_mask_out_t m = mask_out();
    m.metrics = &metrics;
    return trm_mask(&b, c, 64, &o, &m);
}

/* --- 2. allocations sized by the caller -------------------------------------------------------- */

static trm_status_t metrics_on_huge_empty_batch(void) {
    trm_batch_t b = batch_of(TRM_LAYOUT_PADDED, 1000000000000, 0);
    b.log_ratio = view(NULL, TRM_DTYPE_F32, 0, 1);
    trm_criterion_t c = criterion(TRM_AGG_MAX, TRM_EST_K2, 1);
    trm_options_t o = default_options();
    trm_metrics_t metrics;
    memset(&metrics, 0, sizeof metrics);
    metrics.struct_size = sizeof metrics;
    metrics.n_rows = -7;
    trm_mask_out_t m = mask_out();
    m.metrics = &metrics;
    trm_status_t status = trm_mask(&b, &c, 1, &o, &m);
    return metrics.n_rows == -7 ? status : -1; /* untouched on error */
}

/* trm_rollout_correction sizes its per-row records and per-worker row scratch by the batch. */
static trm_status_t correction_of(trm_batch_t *b) {
    trm_rejection_t r = {.level = TRM_REJECT_SEQ_MAX, .estimator = TRM_EST_K2, .lo = -INFINITY, .hi = 0.1};
    trm_correction_config_t config = {.struct_size = sizeof config, .compute_dtype = TRM_DTYPE_F32,
                                      .mean_dtype = TRM_DTYPE_F32, .clamp = 20, .n_rejections = 1, .rejections = &r};
    trm_correction_stats_t stats;
    memset(&stats, 0, sizeof stats);
    stats.struct_size = sizeof stats;
    stats.n_rows = -7;
    trm_correction_out_t o = {.struct_size = sizeof o, .stats = &stats};
    trm_status_t status = trm_rollout_correction(b, &config, &o);
    return stats.n_rows == -7 ? status : -1; /* untouched on error */
}

static trm_status_t correction_on_huge_empty_batch(void) {
    trm_batch_t b = batch_of(TRM_LAYOUT_PADDED, 1000000000000, 0);
    b.log_ratio = view(NULL, TRM_DTYPE_F32, 0, 1);
    return correction_of(&b);
}

static const float one_value = 0.0f;

static trm_status_t correction_on_huge_broadcast_row(void) {
    trm_batch_t b = batch_of(TRM_LAYOUT_PADDED, 1, (int64_t)1 << 40);
    b.log_ratio = view(&one_value, TRM_DTYPE_F32, 0, 0); /* one element read everywhere: valid input */
    return correction_of(&b);
}

/* Found by the fuzzer's correction group: trm_rollout_correction and trm_weights_divide skipped the
   offsets and lengths scans, so a negative length trapped (debug) and offsets past n_cols read and
   wrote outside the arrays. */
static const float two_values[2] = {0.5f, -0.5f};

static trm_status_t correction_negative_length(void) {
    static const int64_t length = -1;
    trm_batch_t b = batch_of(TRM_LAYOUT_PADDED, 1, 2);
    b.log_ratio = view(two_values, TRM_DTYPE_F32, 2, 1);
    b.lengths = view(&length, TRM_DTYPE_I64, 0, 1);
    return correction_of(&b);
}

static trm_status_t correction_offsets_past_the_end(void) {
    static const int64_t offsets[2] = {0, 1000};
    trm_batch_t b = batch_of(TRM_LAYOUT_PACKED, 1, 2);
    b.log_ratio = view(two_values, TRM_DTYPE_F32, 0, 1);
    b.offsets = view(offsets, TRM_DTYPE_I64, 0, 1);
    return correction_of(&b);
}

static trm_status_t weights_divide_offsets_past_the_end(void) {
    static const int64_t offsets[2] = {0, 1000};
    float weights[2] = {1.0f, 2.0f};
    trm_typed_out_t w = {.data = weights, .dtype = TRM_DTYPE_F32, .stride_col = 1};
    trm_status_t status = trm_weights_divide(TRM_LAYOUT_PACKED, 1, 2, view(offsets, TRM_DTYPE_I64, 0, 1), 2.0, w);
    return weights[0] == 1.0f && weights[1] == 2.0f ? status : -1; /* untouched on error */
}

/* Packed rows without positions and NULL weights (allowed for an empty grid): a debug build
   unwrapped the NULL weights for each row. */
static trm_status_t weights_divide_empty_rows_null_weights(void) {
    static const int64_t offsets[3] = {0, 0, 0};
    trm_typed_out_t w = {.data = NULL, .dtype = TRM_DTYPE_F32, .stride_col = 1};
    return trm_weights_divide(TRM_LAYOUT_PACKED, 2, 0, view(offsets, TRM_DTYPE_I64, 0, 1), 2.0, w);
}

/* The output mask in an ABI-3 integer mask dtype without a batch mask (m = 1): nothing was written. */
static trm_status_t correction_i16_output_mask(void) {
    int16_t mask[2] = {7, 7};
    trm_batch_t b = batch_of(TRM_LAYOUT_PADDED, 1, 2);
    b.log_ratio = view(two_values, TRM_DTYPE_F32, 2, 1);
    trm_correction_config_t config = {.struct_size = sizeof config, .compute_dtype = TRM_DTYPE_F32,
                                      .mean_dtype = TRM_DTYPE_F32, .clamp = 20};
    trm_correction_out_t o = {.struct_size = sizeof o};
    o.mask = (trm_typed_out_t){.data = mask, .dtype = TRM_DTYPE_I16, .stride_row = 2, .stride_col = 1};
    trm_status_t status = trm_rollout_correction(&b, &config, &o);
    return mask[0] == 1 && mask[1] == 1 ? status : -1;
}

static trm_view3_t view3(const void *data, int32_t dtype, int64_t row, int64_t col, int64_t depth) {
    trm_view3_t v = {.data = data, .dtype = dtype, .stride_row = row, .stride_col = col, .stride_depth = depth};
    return v;
}

static trm_logit_options_t logit_options(void) {
    trm_logit_options_t o = {.struct_size = sizeof(trm_logit_options_t), .temperature = 1};
    return o;
}

static const float logits[4] = {0.5f, -1.0f, 2.0f, 0.0f};
static const int64_t zero_id = 0;

/* trm_topk_kl_lower_bound on one position of a 4-token vocabulary with k listed tokens. */
static trm_status_t topk_one_position(int64_t k, const void *logprobs, const void *ids, int64_t depth_stride, float *kl) {
    trm_topk_batch_t b = {.struct_size = sizeof(trm_topk_batch_t), .n_rows = 1, .n_cols = 1, .vocab = 4, .k = k};
    b.rollout_logprobs = view3(logprobs, TRM_DTYPE_F32, 0, 0, depth_stride);
    b.rollout_ids = view3(ids, TRM_DTYPE_I64, 0, 0, depth_stride);
    b.train = view3(logits, TRM_DTYPE_F32, 4, 4, 1);
    trm_logit_options_t o = logit_options();
    return trm_topk_kl_lower_bound(&b, &o, out(kl, 1, 1));
}

static trm_status_t topk_huge_k(void) {
    float kl = -7;
    trm_status_t status = topk_one_position(INT64_C(1) << 40, &one_float, &zero_id, 0, &kl);
    return kl == -7 ? status : -1;
}

/* --- 3. refusals after an O(n) scan ------------------------------------------------------------ */

static const int64_t zero_count = 0;
static const double zero_sum = 0;
static const int32_t k2_code = TRM_EST_K2;

static trm_partials_t broadcast_partials(int64_t rows) {
    trm_partials_t p;
    memset(&p, 0, sizeof p);
    p.struct_size = sizeof p;
    p.n_rows = rows;
    p.n_estimators = 1;
    p.estimators = &k2_code;
    p.count = out((void *)&zero_count, 0, 0);
    p.nonfinite = out((void *)&zero_count, 0, 0);
    p.sum = out((void *)&zero_sum, 0, 0);
    p.max = out((void *)&one_float, 0, 0);
    p.min = out((void *)&one_float, 0, 0);
    return p;
}

static trm_status_t partials_merge_huge_zero_strides(void) {
    trm_partials_t a = broadcast_partials(10000000000000), b = a;
    int64_t count = -7, nonfinite = -7;
    double sum = -7;
    float max = -7, min = -7;
    trm_partials_t result = a;
    result.count = out(&count, 0, 0);
    result.nonfinite = out(&nonfinite, 0, 0);
    result.sum = out(&sum, 0, 0);
    result.max = out(&max, 0, 0);
    result.min = out(&min, 0, 0);
    trm_status_t status = trm_partials_merge(&a, &b, &result);
    return count == -7 && sum == -7 && max == -7 ? status : -1;
}

static trm_status_t partials_decide_huge_zero_strides(void) {
    trm_partials_t p = broadcast_partials(10000000000000);
    trm_criterion_t c = criterion(TRM_AGG_MAX, TRM_EST_K2, 1);
    trm_options_t o = default_options();
    uint8_t keep = 7;
    trm_mask_out_t m = mask_out();
    m.keep_row = out(&keep, 0, 0);
    trm_status_t status = trm_partials_decide(&p, &c, 1, &o, &m);
    return keep == 7 ? status : -1;
}

static trm_status_t lengths_scan_after_cheap_checks(void) {
    trm_batch_t b = batch_of(TRM_LAYOUT_PADDED, 10000000000000, 1);
    b.log_ratio = view(&one_float, TRM_DTYPE_F32, 0, 0);
    b.lengths = view(&one_length, TRM_DTYPE_I64, 0, 0);
    trm_options_t o = default_options();
    uint8_t keep = 7;
    trm_mask_out_t m = mask_out();
    m.keep_row = out(&keep, 0, 0);
    return trm_mask(&b, NULL, 0, &o, &m);
}

static trm_status_t token_id_scan_after_cheap_checks(void) {
    trm_logit_pair_t p;
    memset(&p, 0, sizeof p);
    p.struct_size = sizeof p;
    p.n_rows = 10000000000000;
    p.n_cols = 1;
    p.vocab = 1;
    p.rollout = view3(logits, TRM_DTYPE_F32, 0, 0, 0);
    p.train = view3(logits, TRM_DTYPE_F32, 0, 0, 0);
    p.token_ids = view(&zero_id, TRM_DTYPE_I64, 0, 0);
    trm_logit_options_t o = logit_options();
    float kl = -7;
    trm_exact_kl_out_t e;
    memset(&e, 0, sizeof e);
    e.struct_size = sizeof e;
    e.kl = out(&kl, 0, 0);
    return trm_exact_kl(&p, &o, &e);
}

/* Found by fuzz/ (logits group): an empty grid of 2^62 rows once scanned every row's token ids. */
static trm_status_t exact_kl_empty_grid_many_rows(void) {
    trm_logit_pair_t p = {.struct_size = sizeof(trm_logit_pair_t), .n_rows = INT64_C(1) << 62, .n_cols = 0, .vocab = 8};
    p.rollout = view3(NULL, TRM_DTYPE_F32, 0, 0, 1);
    p.train = view3(NULL, TRM_DTYPE_F32, 0, 0, 1);
    p.token_ids = view(&zero_id, TRM_DTYPE_I64, 0, 1);
    trm_logit_options_t o = logit_options();
    trm_exact_kl_out_t e = {.struct_size = sizeof(trm_exact_kl_out_t)};
    return trm_exact_kl(&p, &o, &e);
}

/* --- 4. NULL data of arrays without elements, in debug builds too ------------------------------ */

static trm_status_t topk_k0_null_ids(void) {
    float kl = -7;
    trm_status_t status = topk_one_position(0, NULL, NULL, 1, &kl);
    return status != TRM_OK || kl == 0 ? status : -1;
}

static trm_status_t column_major_empty_rows_null_data(void) {
    trm_batch_t b = batch_of(TRM_LAYOUT_PADDED, 8, 0);
    b.log_ratio = view(NULL, TRM_DTYPE_F32, 1, 8);
    b.mask = view(NULL, TRM_DTYPE_U8, 1, 8);
    trm_options_t o = default_options();
    uint8_t keep[8];
    memset(keep, 7, sizeof keep);
    trm_criterion_t c = criterion(TRM_AGG_MAX, TRM_EST_K2, 1);
    trm_mask_out_t m = mask_out();
    m.keep_row = out(keep, 1, 0);
    trm_status_t status = trm_mask(&b, &c, 1, &o, &m);
    for (int i = 0; i < 8; i++) if (status == TRM_OK && keep[i] != 1) return -1;
    return status;
}

/* --- 5. no load past a U8/BOOL mask's last element, whatever its stride ------------------------ */

static trm_status_t strided_mask_at_guard_page(int32_t dtype, int64_t stride, int64_t cols) {
    size_t bytes = (size_t)((cols - 1) * (stride < 0 ? -stride : stride) + 1);
    uint8_t *mask = before_guard(bytes);
    memset(mask, 1, bytes);
    const uint8_t *first = stride < 0 ? mask + bytes - 1 : mask; /* element 0 */
    float *values = before_guard((size_t)cols * sizeof(float));
    for (int64_t t = 0; t < cols; t++) values[t] = t == cols - 1 ? 3.0f : 0.1f;
    trm_batch_t b = batch_of(TRM_LAYOUT_PADDED, 1, cols);
    b.log_ratio = view(values, TRM_DTYPE_F32, cols, 1);
    b.mask = view(first, dtype, 0, stride);
    trm_options_t o = default_options();
    trm_criterion_t c = criterion(TRM_AGG_MAX, TRM_EST_DELTA, 1);
    uint8_t keep = 7;
    int64_t count = -1;
    trm_mask_out_t m = mask_out();
    m.keep_row = out(&keep, 1, 0);
    m.count = out(&count, 1, 0);
    trm_status_t status = trm_mask(&b, &c, 1, &o, &m);
    return status != TRM_OK || (keep == 0 && count == cols) ? status : -1;
}

static trm_status_t u8_mask_stride_2(void) { return strided_mask_at_guard_page(TRM_DTYPE_U8, 2, 16); }
static trm_status_t bool_mask_stride_2(void) { return strided_mask_at_guard_page(TRM_DTYPE_BOOL, 2, 8); }
static trm_status_t u8_mask_stride_minus_2(void) { return strided_mask_at_guard_page(TRM_DTYPE_U8, -2, 16); }
static trm_status_t u8_mask_stride_2_long(void) { return strided_mask_at_guard_page(TRM_DTYPE_U8, 2, 200); }

/* --- 6. the specific status for each bad argument ---------------------------------------------- */

static trm_status_t token_values_negative_sizes(void) {
    trm_batch_t b = huge_padded(-1);
    trm_options_t o = default_options();
    return trm_token_values(&b, TRM_EST_K3, &o, out(NULL, 0, 0));
}

static trm_status_t importance_weights_negative_sizes(void) {
    trm_batch_t b = huge_padded(-1);
    trm_options_t o = default_options();
    trm_weight_rule_t rule = {TRM_WEIGHT_TOKEN, TRM_WEIGHT_MODE_TRUNCATE, 0, 2};
    return trm_importance_weights(&b, &o, rule, view(NULL, TRM_DTYPE_NONE, 0, 0), out(NULL, 0, 0));
}

static trm_status_t token_keep_negative_sizes(void) {
    trm_batch_t b = huge_padded(-1);
    trm_options_t o = default_options();
    return trm_token_keep(&b, NULL, 0, &o, view(&one_byte, TRM_DTYPE_U8, 0, 1), out(NULL, 0, 0));
}

static const struct {
    const char *name;
    case_fn run;
    trm_status_t expected;
} cases[] = {
    {"token_values_grid_overflow", token_values_grid_overflow, TRM_E_BAD_SIZE},
    {"importance_weights_grid_overflow", importance_weights_grid_overflow, TRM_E_BAD_SIZE},
    {"token_keep_grid_overflow", token_keep_grid_overflow, TRM_E_BAD_SIZE},
    {"packed_rows_plus_one_overflow", packed_rows_plus_one_overflow, TRM_E_BAD_SIZE},
    {"metrics_rows_times_criteria_overflow", metrics_rows_times_criteria_overflow, TRM_E_TOO_LARGE},
    {"metrics_on_huge_empty_batch", metrics_on_huge_empty_batch, TRM_E_TOO_LARGE},
    {"topk_huge_k", topk_huge_k, TRM_E_TOO_LARGE},
    {"correction_on_huge_empty_batch", correction_on_huge_empty_batch, TRM_E_TOO_LARGE},
    {"correction_on_huge_broadcast_row", correction_on_huge_broadcast_row, TRM_E_TOO_LARGE},
    {"correction_negative_length", correction_negative_length, TRM_E_BAD_LENGTHS},
    {"correction_offsets_past_the_end", correction_offsets_past_the_end, TRM_E_BAD_OFFSETS},
    {"weights_divide_offsets_past_the_end", weights_divide_offsets_past_the_end, TRM_E_BAD_OFFSETS},
    {"weights_divide_empty_rows_null_weights", weights_divide_empty_rows_null_weights, TRM_OK},
    {"correction_i16_output_mask", correction_i16_output_mask, TRM_OK},
    {"partials_merge_huge_zero_strides", partials_merge_huge_zero_strides, TRM_E_BAD_STRIDE},
    {"partials_decide_huge_zero_strides", partials_decide_huge_zero_strides, TRM_E_BAD_STRIDE},
    {"lengths_scan_after_cheap_checks", lengths_scan_after_cheap_checks, TRM_E_BAD_STRIDE},
    {"token_id_scan_after_cheap_checks", token_id_scan_after_cheap_checks, TRM_E_BAD_STRIDE},
    {"exact_kl_empty_grid_many_rows", exact_kl_empty_grid_many_rows, TRM_OK},
    {"topk_k0_null_ids", topk_k0_null_ids, TRM_OK},
    {"column_major_empty_rows_null_data", column_major_empty_rows_null_data, TRM_OK},
    {"u8_mask_stride_2", u8_mask_stride_2, TRM_OK},
    {"bool_mask_stride_2", bool_mask_stride_2, TRM_OK},
    {"u8_mask_stride_minus_2", u8_mask_stride_minus_2, TRM_OK},
    {"u8_mask_stride_2_long", u8_mask_stride_2_long, TRM_OK},
    {"token_values_negative_sizes", token_values_negative_sizes, TRM_E_BAD_SIZE},
    {"importance_weights_negative_sizes", importance_weights_negative_sizes, TRM_E_BAD_SIZE},
    {"token_keep_negative_sizes", token_keep_negative_sizes, TRM_E_BAD_SIZE},
};

/* Runs one case in a child. The alarm only ends a stalled child (a refusal that scans 10^13 rows
   would run for hours), so that the run reports it instead of hanging; it is not a timing test. */
static int run_case(int index) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) return 0;
    if (pid == 0) {
        alarm(300);
        trm_status_t status = cases[index].run();
        _exit(status == cases[index].expected ? 0 : status < 0 ? 254 : 1 + (status & 0x7f));
    }
    int wstatus = 0;
    waitpid(pid, &wstatus, 0);
    if (WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0) {
        printf("ok   %s\n", cases[index].name);
        return 1;
    }
    if (WIFSIGNALED(wstatus)) {
        printf("FAIL %s: killed by signal %d\n", cases[index].name, WTERMSIG(wstatus));
    } else if (WEXITSTATUS(wstatus) == 254) {
        printf("FAIL %s: wrong output\n", cases[index].name);
    } else {
        int got = WEXITSTATUS(wstatus) - 1;
        printf("FAIL %s: %s, expected %s\n", cases[index].name, trm_status_name(got), trm_status_name(cases[index].expected));
    }
    return 0;
}

int main(int argc, char **argv) {
    int n = (int)(sizeof cases / sizeof cases[0]), passed = 0, ran = 0;
    for (int i = 0; i < n; i++) {
        if (argc > 1 && strcmp(argv[1], cases[i].name) != 0) continue;
        passed += run_case(i);
        ran++;
    }
    printf("%d of %d cases passed\n", passed, ran);
    return ran > 0 && passed == ran ? 0 : 1;
}

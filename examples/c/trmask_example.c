/* A C consumer of the trmask ABI: the paper's TRM-Max&Avg on a tiny padded batch, then a refused
   call. Builds as C99 and as C++ with -Wall -Wextra -Werror (see README.md). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "trmask.h"

#define ROWS 3
#define COLS 4

static trm_view_t view_f32(const float *data) {
    trm_view_t v;
    memset(&v, 0, sizeof v);
    v.data = data;
    v.dtype = TRM_DTYPE_F32;
    v.stride_row = COLS;
    v.stride_col = 1;
    return v;
}

int main(void) {
    /* Log-probs of the sampled tokens: training engine and rollout engine. Row 1 has a spike. */
    const float logp_train[ROWS][COLS] = {{-0.51f, -1.20f, -0.05f, -2.00f},
                                          {-0.50f, -0.20f, -0.05f, -2.00f},
                                          {-0.30f, -0.10f, 0.0f, 0.0f}};
    const float logp_roll[ROWS][COLS] = {{-0.50f, -1.21f, -0.05f, -2.02f},
                                         {-0.50f, -1.40f, -0.05f, -2.00f},
                                         {-0.31f, -0.10f, 0.0f, 0.0f}};
    const uint8_t mask[ROWS][COLS] = {{1, 1, 1, 1}, {1, 1, 1, 1}, {1, 1, 0, 0}};
    uint8_t keep_row[ROWS];
    float row_stats[ROWS][2], weights[ROWS][COLS];
    int64_t count[ROWS], rejected[2];

    trm_batch_t batch;
    memset(&batch, 0, sizeof batch);
    batch.struct_size = sizeof batch;
    batch.layout = TRM_LAYOUT_PADDED;
    batch.n_rows = ROWS;
    batch.n_cols = COLS;
    batch.logp_train = view_f32(&logp_train[0][0]);
    batch.logp_roll = view_f32(&logp_roll[0][0]);
    batch.mask.data = &mask[0][0];
    batch.mask.dtype = TRM_DTYPE_U8;
    batch.mask.stride_row = COLS;
    batch.mask.stride_col = 1;

    trm_criterion_t criteria[2];
    memset(criteria, 0, sizeof criteria); /* kl_max and eps stay 0: only LN-TRM takes them */
    criteria[0].aggregation = TRM_AGG_MAX;
    criteria[0].estimator = TRM_EST_K2;
    criteria[0].lo = -INFINITY;
    criteria[0].hi = 0.1;
    criteria[1].aggregation = TRM_AGG_MEAN;
    criteria[1].estimator = TRM_EST_K3;
    criteria[1].lo = -INFINITY;
    criteria[1].hi = 0.002;

    trm_options_t options;
    memset(&options, 0, sizeof options);
    options.struct_size = sizeof options;
    options.nan_policy = TRM_NAN_REJECT;
    options.clamp = INFINITY;

    trm_mask_out_t out;
    memset(&out, 0, sizeof out);
    out.struct_size = sizeof out;
    out.keep_row.data = keep_row;
    out.keep_row.stride_row = 1;
    out.count.data = count;
    out.count.stride_row = 1;
    out.row_stats.data = &row_stats[0][0];
    out.row_stats.stride_row = 2;
    out.row_stats.stride_col = 1;
    out.rejected = rejected;
    /* Truncated sequence-level importance weights (TIS), in the same pass. */
    out.weights.data = &weights[0][0];
    out.weights.stride_row = COLS;
    out.weights.stride_col = 1;
    out.weight_rule.level = TRM_WEIGHT_SEQUENCE;
    out.weight_rule.mode = TRM_WEIGHT_MODE_TRUNCATE;
    out.weight_rule.hi = 2.0;
    trm_metrics_t metrics;
    memset(&metrics, 0, sizeof metrics);
    metrics.struct_size = sizeof metrics;
    out.metrics = &metrics;

    printf("trmask %s (ABI %u)\n", trm_version(), (unsigned)trm_abi_version());
    trm_status_t status = trm_mask(&batch, criteria, 2, &options, &out);
    if (status != TRM_OK) {
        printf("error: %s (%s)\n", trm_status_string(status), trm_status_name(status));
        return 1;
    }
    for (int i = 0; i < ROWS; i++) {
        printf("row %d: keep=%d count=%lld max_k2=%.6g mean_k3=%.6g weight=%.6g\n", i, keep_row[i],
               (long long)count[i], (double)row_stats[i][0], (double)row_stats[i][1], (double)weights[i][0]);
    }
    printf("rejected: max_k2=%lld mean_k3=%lld\n", (long long)rejected[0], (long long)rejected[1]);
    printf("kept %lld of %lld rows, %lld of %lld tokens; mean k3 %.6g\n", (long long)metrics.n_rows_kept,
           (long long)metrics.n_rows, (long long)metrics.n_tokens_kept, (long long)metrics.n_tokens, metrics.kl_k3);

    /* A refused call: a negative upper bound on a non-negative estimator. */
    criteria[0].hi = -1.0;
    status = trm_mask(&batch, criteria, 2, &options, &out);
    printf("refused: %s (%s)\n", trm_status_name(status), trm_status_string(status));
    return status == TRM_E_BAD_THRESHOLD ? 0 : 1;
}

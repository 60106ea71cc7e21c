/*
 * trmask.h: the C ABI of trmask, Trust Region Masking for LLM reinforcement learning.
 *
 * Hand-written; the Swift implementation is checked against every declaration here at compile
 * time (`@c @implementation`). Section references (semantics §n) are the numbered sections of
 * docs/semantics.md, the contract the library implements.
 *
 * Conventions shared by every function:
 * - Sizes, strides and offsets are int64_t. Strides count ELEMENTS, not bytes; they may be
 *   negative (a reversed view) and, on inputs, zero (a broadcast view).
 * - A data pointer may be NULL exactly when its array has no elements.
 * - Every function validates every argument before it reads or writes any array. On error it
 *   returns a nonzero status and leaves every output untouched; on success every requested output
 *   is fully written.
 * - Outputs must not overlap each other or any input (checked on byte extents, conservatively:
 *   an output whose extent intersects another array's extent is refused even if the elements
 *   interleave). Within one output, strides must not map two elements to one address (checked
 *   with the nesting rule: sorted by |stride|, each |stride| exceeds the extent of the smaller).
 * - Functions are thread-safe. Their one global state is a pool of helper threads, started by the
 *   first multi-threaded call and kept (idle helpers poll for ~0.1 ms, then sleep): one call uses
 *   it at a time, a call made while another thread's call holds it runs on its caller's thread
 *   alone, and a fork()ed child starts its own pool. `threads` is the most threads a call uses:
 *   counts above the processors online are clamped to them, and calls under 2^14 positions (or
 *   logits) use one. Results are bit-identical for every `threads` value (rows are never split
 *   across threads; sums use an order fixed in source).
 * - Zero-initialised structs (`= {0}` or memset) are valid defaults, as in zlib-style APIs: set
 *   `struct_size` and what you need. A zero field means: absent array (a view's dtype
 *   TRM_DTYPE_NONE, an output's NULL data), padded layout, TRM_NAN_REJECT, no clamp, automatic
 *   threads, temperature 1, no weight cap, reward range 1. The fields a zero cannot default,
 *   which you must set, are listed with each struct ("must be set").
 * - The promise, for ANY argument values: every function returns a status. It never traps or
 *   aborts, never reads or writes outside the caller's arrays and structs (a struct is read up to
 *   this ABI's size only, whatever its struct_size says beyond that), and spends time in
 *   proportion to the work it accepted: sizes are multiplied with overflow checks before anything
 *   depends on them, and every O(1) check (sizes, pointers, struct sizes, enums, dtypes, strides,
 *   extents, aliasing, options, criteria) comes before the checks that scan an array's contents
 *   (packed offsets, lengths, token ids, partial counts, dbar), so a call refused for any other
 *   reason returns after O(1) work whatever n_rows says. On error no output is written
 *   (trm_mask's metrics included): every function validates everything, and allocates what it
 *   needs, before its first write. Checked by fuzz/ (libFuzzer, AddressSanitizer, guard pages
 *   around every array) and Tests/cabi/regressions.c.
 * - Limits (TRM_E_TOO_LARGE): a valid request that needs more than 4 GiB of working memory is
 *   refused, as is one whose allocation fails. The requests that allocate per-call memory that
 *   grows with an argument: trm_mask's metrics keep a 240-byte record per row plus 4 bytes per
 *   row and row criterion (refused above about 17.9 million rows without row criteria, 8.7 million
 *   with 64: split the batch); trm_topk_kl_lower_bound sorts one position's k ids (k above 2^29
 *   refused); trm_rollout_correction keeps a record per row and per row and rejection option,
 *   and per worker thread 25 bytes per position of the longest row (trm_correction_reduce the
 *   same records for the rows of all its shards); trm_group_advantages sorts
 *   8 bytes per row. Everything else allocates O(threads + criteria) memory at most.
 *
 * The header includes only <stdint.h> and <stddef.h> and compiles as C99 and C++.
 */
#ifndef TRMASK_H
#define TRMASK_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------------------------
 * Versions. TRM_ABI_VERSION changes whenever a struct layout or a signature changes; the Python
 * wrapper refuses a library whose trm_abi_version() differs from the one it was written for.
 * ------------------------------------------------------------------------------------------ */
#define TRM_VERSION_MAJOR 0
#define TRM_VERSION_MINOR 2
#define TRM_VERSION_PATCH 0
#define TRM_VERSION_STRING "0.2.0"
#define TRM_ABI_VERSION 4

/* The ABI version the loaded library implements (compare with TRM_ABI_VERSION). */
uint32_t trm_abi_version(void);
/* The library version as static text, e.g. "0.2.0". Never NULL. */
const char *trm_version(void);

/* ---------------------------------------------------------------------------------------------
 * Status codes. Values are pinned: codes are only ever appended.
 * ------------------------------------------------------------------------------------------ */
typedef int32_t trm_status_t;

#define TRM_OK 0                /* success */
#define TRM_E_NULL_POINTER 1    /* a required pointer is NULL */
#define TRM_E_BAD_STRUCT_SIZE 2 /* a struct's struct_size is smaller than this ABI's struct */
#define TRM_E_BAD_SIZE 3        /* a count or size is negative, or a product of sizes overflows */
#define TRM_E_BAD_DTYPE 4       /* unknown dtype, or one this argument does not accept */
#define TRM_E_BAD_STRIDE 5      /* output strides map two elements to one address, or a packed
                                   view has a nonzero stride_row */
#define TRM_E_OUT_OF_RANGE 6    /* an array's extent overflows the address space */
#define TRM_E_ALIASING 7        /* an output overlaps another output or an input */
#define TRM_E_BAD_LAYOUT 8      /* unknown layout */
#define TRM_E_BAD_INPUTS 9      /* not exactly one of: logp_train with logp_roll, log_ratio,
                                   values */
#define TRM_E_BAD_ESTIMATOR 10  /* unknown estimator, or one the inputs cannot give (`value`
                                   needs `values`; the others need log-probs or a log-ratio) */
#define TRM_E_BAD_AGGREGATION 11 /* unknown aggregation */
#define TRM_E_BAD_NAN_POLICY 12 /* unknown NaN policy */
#define TRM_E_BAD_THRESHOLD 13  /* NaN bound, lo > hi, or a bound no value of a non-negative
                                   estimator can meet (semantics §4.6) */
#define TRM_E_BAD_OFFSETS 14    /* packed offsets decrease, start below 0 or end past n_cols */
#define TRM_E_BAD_LENGTHS 15    /* a length is negative or longer than its row */
#define TRM_E_BAD_OPTION 16     /* clamp negative or NaN, threads < 0, a flag not 0/1, a reserved
                                   field not 0 */
#define TRM_E_INTERNAL 17       /* a bug in trmask; please report it */
#define TRM_E_BAD_TEMPERATURE 18 /* temperature not finite and > 0 */
#define TRM_E_BAD_TOKEN_ID 19   /* a token id outside 0 ..< vocabulary size, or repeated within a
                                   position's top-k */
#define TRM_E_BAD_BOUND_INPUT 20 /* an error-bound input out of its domain (T < 1, a negative or
                                    non-finite divergence, reward range not > 0, dbar length) */
#define TRM_E_BAD_LENGTH_NEUTRAL 21 /* TRM_AGG_LN_TRM without kl_max finite and > 0, or with eps
                                       NaN or < 0; or kl_max/eps nonzero on another aggregation */
#define TRM_E_BAD_WEIGHT_RULE 22 /* unknown weight level or mode, or bounds not 0 <= lo <= hi with
                                    hi > 0 (NaN refused) and a float32 between them; TRUNCATE
                                    with lo != 0 */
#define TRM_E_NEEDS_TOKENS 23   /* asked of row partials, something that needs every token: a
                                   token criterion, or keep_token */
#define TRM_E_BAD_PARTIALS 24   /* partials whose row count or estimator list differ from the
                                   other arguments', or that hold a negative count (or counts
                                   whose merge overflows int64) */
#define TRM_E_TOO_LARGE 25      /* the request is valid but needs more working memory than
                                   trmask allocates for it (limits: "Limits" below); nothing is
                                   written */
#define TRM_E_NEEDS_LOG_PROBS 26 /* a binary estimator (TRM_EST_BDIFF .. TRM_EST_BKL_SYM) asked of
                                    a log_ratio or values input: they are functions of the two
                                    probabilities, so they need logp_train and logp_roll; also
                                    an advantage rule on a values input, or its BDIFF/BKL
                                    statistic without both log-probs */
#define TRM_E_BAD_ADVANTAGE_RULE 27 /* trm_advantage_rule_t: unknown statistic or zero mode, a
                                       NaN or negative bound (RATIO: not > 0), bounds on
                                       TRM_ADV_NONE, sequence not 0/1, a NaN sequence_limit, a
                                       reserved field not 0, or neither rule asked for */
#define TRM_E_NEEDS_ADVANTAGES 28 /* advantages that do not fit the rule: none for a rule,
                                     some without a rule, both advantages and row_advantages,
                                     per-token ones for the sequence rule (it needs
                                     row_advantages), or per-token ones with only the sequence
                                     rule */
#define TRM_E_BAD_REJECTION 30  /* a rollout-correction rejection with an unknown level, an
                                   estimator other than k1/k2/k3, a NaN bound or lo > hi; or more
                                   than TRM_MAX_REJECTIONS of them */
#define TRM_E_BAD_CORRECTION_WEIGHTS 31 /* rollout-correction weights with a level other than token
                                           or sequence, a mode other than truncate or mask, or
                                           bounds not 0 < lo <= hi (mask) / 0 < hi (truncate), NaN
                                           refused */
#define TRM_E_BAD_DIVISOR 32    /* a weight divisor that is not finite and > 0 */
#define TRM_E_BAD_CORRECTION_ROWS 33 /* rollout-correction row records that do not fit: n_rows
                                        other than the batch's, mask_dtype, weights_dtype or
                                        log_probs other than the call's (or than the other
                                        shards'), a valid count that is not an integer in
                                        0..2^53 (or counts whose total overflows), a flag not 0/1 */

/* Static English text for a status, e.g. "output strides overlap". Never NULL; unknown codes
   give "unknown status". */
const char *trm_status_string(trm_status_t status);
/* The status's macro name as static text, e.g. "TRM_E_BAD_STRIDE". Never NULL; unknown codes
   give "TRM_E_UNKNOWN". */
const char *trm_status_name(trm_status_t status);

/* ---------------------------------------------------------------------------------------------
 * Enumerations (int32_t fields of the structs below).
 * ------------------------------------------------------------------------------------------ */
/* Element types (docs/dtypes.md). Log-probs, log-ratios and values: F32, F64, F16 or BF16, and
   logp_train and logp_roll may differ (a BF16 trainer against an F32 rollout). Narrow types are
   widened exactly to float32; every computation is in float32 or float64 (semantics §10).
   trm_batch_t masks: any of these dtypes, nonzero = valid (a NaN element is nonzero; -0.0 is
   zero); U8 and BOOL masks are read fastest. Offsets and lengths: I32 or I64. */
#define TRM_DTYPE_NONE 0 /* the array is absent */
#define TRM_DTYPE_F32 1
#define TRM_DTYPE_F64 2
#define TRM_DTYPE_F16 3
#define TRM_DTYPE_BF16 4
#define TRM_DTYPE_U8 5
#define TRM_DTYPE_BOOL 6
#define TRM_DTYPE_I32 7
#define TRM_DTYPE_I64 8
#define TRM_DTYPE_I8 9   /* masks only (ABI 3) */
#define TRM_DTYPE_I16 10 /* masks only (ABI 3) */
#define TRM_DTYPE_U16 11 /* masks only (ABI 3) */
#define TRM_DTYPE_U32 12 /* masks only (ABI 3) */
#define TRM_DTYPE_U64 13 /* masks only (ABI 3) */

/* Batch layouts (semantics §10). */
#define TRM_LAYOUT_PADDED 0 /* [n_rows, n_cols] arrays, each with its own two strides */
#define TRM_LAYOUT_PACKED 1 /* 1-D arrays of n_cols tokens; row i is offsets[i] ..< offsets[i+1] */

/* Per-token estimators of delta = logp_train - logp_roll (semantics §2). */
#define TRM_EST_DELTA 0 /* delta */
#define TRM_EST_K1 1    /* -delta */
#define TRM_EST_K2 2    /* delta^2 / 2 */
#define TRM_EST_K3 3    /* exp(delta) - 1 - delta, computed without cancellation */
#define TRM_EST_ABS 4   /* |delta| */
#define TRM_EST_RATIO 5 /* exp(delta) */
#define TRM_EST_TV 6    /* |exp(delta) - 1| */
#define TRM_EST_VALUE 7 /* the `values` input itself (a precomputed per-token divergence) */
/* Binary (Bernoulli) estimators of the sampled token (semantics §4.7; docs/rules-2026.md), computed
   from logp_train and logp_roll themselves in float64 and rounded once to float (a log_ratio or
   values input gives TRM_E_NEEDS_LOG_PROBS). p_t = exp(logp_train), p_r = exp(logp_roll);
   KL_B(a || b) = a ln(a/b) + (1-a) ln((1-a)/(1-b)) with each probability clamped to
   [eps, 1 - eps] in log space (eps: trm_options_t.binary_eps, default 1e-6; 0 = exact, where
   0 ln 0 = 0 and positive mass against zero mass is +inf). lt = lr = -inf gives 0. The clamp
   option (of delta) does not apply to them. Accuracy: BDIFF within 2e-7 absolute of float64
   (measured: one float rounding), the KL ones within 1e-5 relative + 1e-12. Partials cannot
   hold them (TRM_E_BAD_ESTIMATOR). */
#define TRM_EST_BDIFF 8   /* p_t - p_r, signed, never clamped (DPPO's binary TV, signed) */
#define TRM_EST_BTV 9     /* |p_t - p_r| */
#define TRM_EST_BKL 10    /* KL_B(p_r || p_t): rollout first, the direction of semantics §1 */
#define TRM_EST_BKL_TR 11 /* KL_B(p_t || p_r): training first */
#define TRM_EST_BKL_SYM 12 /* max(BKL, BKL_TR) (KPop) */

/* Aggregations of a criterion (semantics §4.1). */
#define TRM_AGG_MAX 0   /* row maximum over valid tokens */
#define TRM_AGG_MIN 1   /* row minimum */
#define TRM_AGG_SUM 2   /* row sum */
#define TRM_AGG_MEAN 3  /* row sum / row count */
#define TRM_AGG_TOKEN 4 /* per token: masks single tokens, never rejects a row */
#define TRM_AGG_SER 5   /* SER (semantics §4.4): row mean of tv; estimator must be TRM_EST_TV */
#define TRM_AGG_LN_TRM 6 /* LN-TRM (semantics §4.4): sum_t w_t tv_t / sum_t w_t over the row's counted
                            tokens t = 1..T, w_t = min(1, (T-t) eps, sqrt((T-t) kl_max / 2));
                            0 when T <= 1; estimator must be TRM_EST_TV */
#define TRM_AGG_GEO 7   /* geometric-mean ratio band (semantics §4.9): g = mean_t delta (float64 sum
                           / count), kept iff ln lo <= g <= ln hi, decided in log space on the
                           float64 g (ln 0 = -inf; lo = -INFINITY or 0 = no lower bound); the
                           row statistic is g rounded to float. Estimator must be TRM_EST_RATIO;
                           partials cannot decide it (TRM_E_NEEDS_TOKENS) */

/* Importance weight levels (semantics §5). */
#define TRM_WEIGHT_TOKEN 0     /* w_t = rho_t = exp(delta_t) */
#define TRM_WEIGHT_SEQUENCE 1  /* w_i = exp(sum_t delta_t), float64, on each counted token */
#define TRM_WEIGHT_GEOMETRIC 2 /* w_i = exp(mean_t delta_t), float64, on each counted token */

/* Importance weight modes (semantics §5). */
#define TRM_WEIGHT_MODE_TRUNCATE 0 /* TIS: min(w, hi) */
#define TRM_WEIGHT_MODE_CLIP 1     /* min(max(w, lo), hi) */
#define TRM_WEIGHT_MODE_MASK 2     /* IcePop / MIS: w if lo <= w <= hi, else exactly 0; decided
                                      in log space (ln lo <= log w <= ln hi: delta per token, the
                                      float64 log weight per row; semantics §4.9) */

/* Most criteria one call takes; the per-criterion arrays of trm_metrics_t have this length. */
#define TRM_MAX_CRITERIA 64

/* Advantage rules (semantics §4.8; docs/rules-2026.md): the statistic of the token rule. */
#define TRM_ADV_NONE 0  /* no token rule */
#define TRM_ADV_BDIFF 1 /* D = p_t - p_r: upper violation D > high, lower D < -low */
#define TRM_ADV_BKL 2   /* TRM_EST_BKL: upper logp_train > logp_roll and bkl > high; lower
                           logp_train < logp_roll and bkl > low */
#define TRM_ADV_RATIO 3 /* delta (after the clamp): upper delta > ln high, lower delta < ln low */
/* What a zero advantage does. */
#define TRM_ADV_ZERO_LOWER 0 /* the lower test applies (prime-rl, verl's DPPO; the default) */
#define TRM_ADV_ZERO_KEEP 1  /* never masked (SkyRL) */

/* What a NaN delta on a valid token does (semantics §4.5). */
#define TRM_NAN_REJECT 0 /* the row fails every row criterion and its stats are NaN (default) */
#define TRM_NAN_SKIP 1   /* the token is treated as invalid */
#define TRM_NAN_ZERO 2   /* delta := 0 (rho = 1) */

/* ---------------------------------------------------------------------------------------------
 * Structs.
 * ------------------------------------------------------------------------------------------ */

/* A strided input array. Element [i, t] of a padded view is at
   data + (i * stride_row + t * stride_col) * element_size; element t of a packed view is at
   data + t * stride_col * element_size. */
typedef struct trm_view_t {
    const void *data;   /* element [0, 0]; may be NULL iff the array has no elements */
    int32_t dtype;      /* TRM_DTYPE_*; TRM_DTYPE_NONE = the array is absent */
    int32_t reserved;   /* must be 0 */
    int64_t stride_row; /* elements between rows (padded); must be 0 for packed views */
    int64_t stride_col; /* elements between consecutive tokens */
} trm_view_t;

/* A strided output array; the element type is fixed by the field that holds it. 1-D outputs use
   stride_row only (stride_col must be 0). */
typedef struct trm_out_t {
    void *data;         /* NULL = this output is not wanted */
    int64_t stride_row; /* elements between rows */
    int64_t stride_col; /* elements between columns (2-D outputs) */
} trm_out_t;

/* A batch of rows: where the per-token log-ratios come from, and which tokens are valid.
   Exactly one source: `logp_train` with `logp_roll` (delta = logp_train - logp_roll rounded once
   to float32: F32/F16/BF16 operands are subtracted in float32, which rounds the exact difference
   once; if either is F64 they are subtracted in float64 and the result rounded to float32), or
   `log_ratio` (delta itself; F64 is rounded to float32), or `values` (a precomputed per-token
   divergence, for estimator TRM_EST_VALUE; F64 is rounded to float32). Unused views have dtype
   TRM_DTYPE_NONE.
   Validity: a token counts iff its mask element is nonzero (no mask: all) and its position in
   the row is below the row's length (no lengths: all).
   Must be set: struct_size, n_rows, n_cols and the source views (zero = padded, no mask). */
typedef struct trm_batch_t {
    uint32_t struct_size; /* sizeof(trm_batch_t) */
    int32_t layout;       /* TRM_LAYOUT_PADDED or TRM_LAYOUT_PACKED */
    int64_t n_rows;       /* B >= 0 */
    int64_t n_cols;       /* padded: tokens per row T >= 0; packed: tokens in the arrays N >= 0 */
    trm_view_t logp_train; /* log pi_theta(y_t) of the sampled tokens */
    trm_view_t logp_roll;  /* log pi_roll(y_t) of the same tokens */
    trm_view_t log_ratio;  /* delta = log(pi_theta / pi_roll), training minus rollout */
    trm_view_t values;     /* a precomputed per-token divergence */
    trm_view_t mask;       /* validity of any dtype (nonzero = valid), same layout as the
                              data; optional */
    trm_view_t lengths;    /* I32/I64 [n_rows] (stride_col): first lengths[i] tokens of row i are
                              valid; each in 0..row length; optional */
    trm_view_t offsets;    /* packed only, I32/I64 [n_rows + 1] (stride_col): non-decreasing,
                              offsets[0] >= 0, offsets[n_rows] <= n_cols; NULL data allowed
                              only when n_rows == 0 */
    /* Appended in ABI 3: advantages for options->advantage (semantics §4.8); at most one of the two,
       and only with an advantage rule (TRM_E_NEEDS_ADVANTAGES). Any float dtype. */
    trm_view_t advantages;     /* per token, same layout as the data (a padded [n_rows] array
                                  broadcast with stride_col 0 is per row too); optional */
    trm_view_t row_advantages; /* per row [n_rows] (stride_col; stride_row must be 0); needed by
                                  the sequence rule; optional */
} trm_batch_t;

/* Advantage-conditioned masks (semantics §4.8, DPPO; docs/rules-2026.md). The token rule masks a
   counted token iff A > 0 and it violates the upper limit, or A < 0 (A = 0 with
   TRM_ADV_ZERO_LOWER) and it violates the lower limit; equality keeps; a NaN statistic or
   advantage masks it (on neither side). Under TRM_NAN_SKIP a NaN delta is not counted; under
   TRM_NAN_ZERO its statistic is 0. The sequence rule (off-policy sequence mask) keeps a row iff
   A_i >= 0 or mean_t(-delta) <= sequence_limit (an empty row has mean 0; a NaN advantage, or a
   NaN mean under TRM_NAN_REJECT, rejects), ANDed with the row criteria. */
typedef struct trm_advantage_rule_t {
    int32_t statistic;      /* TRM_ADV_*: the token rule; TRM_ADV_NONE = none */
    int32_t zero_advantage; /* TRM_ADV_ZERO_* */
    double low;             /* the lower limit, >= 0 (RATIO: > 0, a ratio); 0 with NONE */
    double high;            /* the upper limit, >= 0 (RATIO: > 0); INFINITY disables the side */
    int32_t sequence;       /* 1: the sequence rule with sequence_limit; 0: none */
    int32_t reserved;       /* must be 0 */
    double sequence_limit;  /* read iff sequence == 1: not NaN */
} trm_advantage_rule_t;

/* Options shared by the reductions. Must be set: struct_size only (a zeroed struct is the
   defaults). */
typedef struct trm_options_t {
    uint32_t struct_size; /* sizeof(trm_options_t) */
    int32_t nan_policy;   /* TRM_NAN_*; 0 = TRM_NAN_REJECT (the default) */
    double clamp;         /* delta <- clamp(delta, -clamp, clamp) before every estimator; > 0;
                             0 or INFINITY = no clamp (the default); verl uses 20 */
    int32_t reject_empty; /* 1: rows without valid tokens are rejected; 0: kept (default) */
    int32_t threads;      /* >= 0; 0 = automatic (every processor online); see above */
    /* Appended in ABI 3 (a zeroed field means the default). */
    int32_t binary_eps_set; /* 0: the binary estimators clamp with eps = 1e-6 (the default);
                               1: with binary_eps */
    int32_t reserved;       /* must be 0 */
    double binary_eps;      /* read iff binary_eps_set == 1: 0 <= eps < 0.5 (0 = exact, no
                               clamp); otherwise TRM_E_BAD_OPTION */
    trm_advantage_rule_t advantage; /* zeroed = no advantage rule (applied by trm_mask and
                                       trm_token_keep; validated, not applied, by
                                       trm_importance_weights; the other functions do not apply
                                       it, but as with every field a malformed one (unknown
                                       statistic or zero mode, sequence not 0/1, reserved != 0,
                                       thresholds without a statistic) is refused everywhere:
                                       TRM_E_BAD_ADVANTAGE_RULE) */
} trm_options_t;

/* One criterion: a row passes iff lo <= aggregation(estimator) <= hi (inclusive); a token
   criterion passes a token iff lo <= estimator(token) <= hi. An infinite bound disables its
   side. NaN bounds, lo > hi, hi < 0 for the non-negative estimators (k2, k3, abs, ratio, tv) and
   a finite lo < 0 for ratio are refused (TRM_E_BAD_THRESHOLD).
   Must be set: every field but kl_max and eps. 0 is a real bound, so a zeroed criterion means
   TRM_AGG_MAX of TRM_EST_DELTA in [0, 0]: set lo = -INFINITY for "no lower bound". */
typedef struct trm_criterion_t {
    int32_t aggregation; /* TRM_AGG_* */
    int32_t estimator;   /* TRM_EST_* */
    double lo;           /* -INFINITY = no lower bound */
    double hi;           /* +INFINITY = no upper bound */
    double kl_max;       /* TRM_AGG_LN_TRM: the KL bound of the position weights, finite, > 0;
                            must be 0 for other aggregations */
    double eps;          /* TRM_AGG_LN_TRM: the TV bound of the position weights, >= 0; 0 or
                            INFINITY = none; must be 0 for other aggregations */
} trm_criterion_t;

/* An importance weight rule (semantics §5). The bounds apply to the float32 weight written, with lo
   and hi rounded inward to float32: a written weight always satisfies lo <= w <= hi (clip),
   w <= hi (truncate). Requires 0 <= lo <= hi, hi > 0 (a zero cap would zero every weight) and a
   float32 value between lo and hi (lo = hi = 0.1 has none). MASK decides in log space (a kept weight is rho rounded to
   float32, which may round onto or just past a bound). A zeroed rule is token weights truncated
   at no cap (hi 0 = INFINITY). */
typedef struct trm_weight_rule_t {
    int32_t level;    /* TRM_WEIGHT_TOKEN, _SEQUENCE or _GEOMETRIC */
    int32_t mode;     /* TRM_WEIGHT_MODE_* */
    double lo;        /* CLIP, MASK: lower bound, 0 = none; TRUNCATE: must be 0 */
    double hi;        /* the cap (TRUNCATE) or upper bound; 0 or INFINITY = none */
} trm_weight_rule_t;

/* Batch metrics of one trm_mask call (semantics §9; formulas in docs/metrics.md). Means and extrema
   over an empty set are 0. NaN marks a metric the inputs cannot define; under TRM_NAN_REJECT a
   NaN delta on a counted token makes every mean and extremum NaN (counts stay exact).
   Must be set: struct_size (reserved must be 0); the rest is output. */
typedef struct trm_metrics_t {
    uint32_t struct_size;         /* sizeof(trm_metrics_t) */
    int32_t reserved;             /* must be 0 */
    int64_t n_rows;               /* B */
    int64_t n_rows_nonempty;      /* rows with a counted token */
    int64_t n_tokens;             /* counted tokens */
    int64_t n_rows_kept;          /* rows whose keep_row is 1 */
    int64_t n_tokens_kept;        /* tokens whose keep_token is 1 */
    int64_t max_len;              /* the longest row in counted tokens (plugin_max_len) */
    double masked_row_fraction;   /* (B - n_rows_kept) / B; 0 when B == 0 */
    double log_ppl_abs_diff;      /* mean_i |mean_t (logp_train - logp_roll)| over non-empty rows,
                                     before the clamp; NaN without both log-probs */
    double kl_k1;                 /* mean_t k1 over counted tokens; NaN for a values input */
    double kl_k3;                 /* mean_t k3; NaN for a values input */
    double chi2_token;            /* mean_t expm1(2 delta) = mean_t rho^2 - 1; NaN for values */
    double plugin_kl_max;         /* max over non-empty rows of the first TRM_AGG_MAX criterion's
                                     statistic; NaN without one. A plug-in estimate, not a bound */
    double plugin_kl_seq;         /* mean_i sum_t k3 over non-empty rows; NaN for values */
    double token_mean[8];         /* by TRM_EST_*: mean over counted tokens of each estimator a
                                     criterion uses; NaN for the others */
    double token_max[8];          /* by TRM_EST_*: maximum, likewise */
    double row_mean[TRM_MAX_CRITERIA]; /* by criterion index: mean over non-empty rows of each row
                                          criterion's statistic; NaN for token criteria and past
                                          n_criteria */
    double row_max[TRM_MAX_CRITERIA];  /* likewise, maximum */
    double row_min[TRM_MAX_CRITERIA];  /* likewise, minimum */
    /* Appended in ABI 3 (semantics §9 additions; docs/metrics.md). */
    double binary_token_mean[5]; /* by TRM_EST_* - TRM_EST_BDIFF: mean over counted tokens of each
                                    binary estimator a criterion uses; NaN for the others */
    double binary_token_max[5];  /* likewise, maximum */
    int64_t n_positions;         /* every position of the token grid: B * T padded, N packed */
    int64_t n_tokens_rejected;   /* n_tokens - n_tokens_kept */
    double delta_mean;           /* mean_t delta over counted tokens (after the clamp); NaN for
                                    values */
    double delta_abs_mean;       /* mean_t |delta|; NaN for values */
    double k3_clamped_token_mean; /* mean_t min(k3, 10) over counted tokens; NaN for values */
    double k3_clamped_row_mean;  /* mean over non-empty rows of mean_t min(k3, 10); NaN for values */
} trm_metrics_t;

/* Outputs of trm_mask; each may be absent (data NULL). Must be set: struct_size (a zeroed struct
   asks for nothing). */
typedef struct trm_mask_out_t {
    uint32_t struct_size; /* sizeof(trm_mask_out_t) */
    int32_t reserved;     /* must be 0 */
    trm_out_t keep_row;   /* uint8_t [n_rows]: 1 = the row passes every row criterion */
    trm_out_t count;      /* int64_t [n_rows]: valid tokens (NaN tokens excluded under SKIP) */
    trm_out_t nonfinite;  /* int64_t [n_rows]: valid tokens whose delta is NaN or +-inf */
    trm_out_t row_stats;  /* float [n_rows, n_row_criteria]: the statistic each row criterion
                             tested, in criteria order (token criteria have no column) */
    trm_out_t keep_token; /* uint8_t token grid (padded [n_rows, n_cols], packed [n_cols]):
                             valid AND row kept AND every token criterion passes; positions
                             outside every row are 0 */
    int64_t *rejected;    /* int64_t [n_criteria], contiguous: rows (row criteria) or tokens
                             (token criteria) each criterion rejects, counted before the AND */
    trm_out_t weights;    /* float token grid: importance weights under weight_rule (semantics §5);
                             0 on tokens not counted, on rejected rows, and under TRM_NAN_REJECT
                             on rows with a NaN; token criteria do not zero weights. Needs
                             log-probs or a log-ratio (a values input: TRM_E_BAD_INPUTS) */
    trm_weight_rule_t weight_rule; /* read only when weights.data is not NULL */
    trm_metrics_t *metrics; /* NULL = not wanted; written last, on success only */
    /* Appended in ABI 3. */
    int64_t *advantage_counts; /* int64_t [5], contiguous, or NULL: the advantage rule's counts
                                  (semantics §4.8): tokens masked on the upper side, on the lower
                                  side, with A > 0, with A < 0; rows the sequence rule
                                  rejects (all 0 without a rule) */
} trm_mask_out_t;

/* ---------------------------------------------------------------------------------------------
 * Functions.
 * ------------------------------------------------------------------------------------------ */

/* Trust region mask and per-row statistics in one pass over the batch (semantics §3, §4).
 *
 * For each row: counts its valid tokens and non-finite deltas, reduces each row criterion's
 * estimator (max, min, sum, mean, SER; float64 sums in a fixed order), and keeps the row iff
 * every row criterion passes. LN-TRM criteria, and the weights when asked for, take a second
 * pass over each row right after its first (the row is then still in cache). Metrics, when
 * asked for, come from the same pass: per-row records reduced in row order. Rows without valid
 * tokens have statistics 0 and are kept unless options->reject_empty. Under TRM_NAN_REJECT a row
 * with a NaN delta on a valid token has NaN statistics and fails every row criterion.
 *
 * batch     required. criteria: n_criteria entries, may be NULL iff n_criteria == 0;
 * n_criteria 0..64. options: required. out: required; each output inside may be NULL.
 *
 * Accuracy: sums and means within 2e-6 * sum|term| of float64; max/min equal the max/min of
 * the float32 per-token values trm_token_values gives.
 *
 * Returns TRM_OK, TRM_E_NULL_POINTER, TRM_E_BAD_STRUCT_SIZE, TRM_E_BAD_SIZE, TRM_E_BAD_DTYPE,
 * TRM_E_BAD_STRIDE, TRM_E_OUT_OF_RANGE, TRM_E_ALIASING, TRM_E_BAD_LAYOUT, TRM_E_BAD_INPUTS,
 * TRM_E_BAD_ESTIMATOR, TRM_E_BAD_AGGREGATION, TRM_E_BAD_NAN_POLICY, TRM_E_BAD_THRESHOLD,
 * TRM_E_BAD_OFFSETS, TRM_E_BAD_LENGTHS, TRM_E_BAD_OPTION, TRM_E_BAD_LENGTH_NEUTRAL,
 * TRM_E_BAD_WEIGHT_RULE (only when out->weights is wanted), TRM_E_TOO_LARGE (metrics asked for
 * more rows than the limit above), TRM_E_NEEDS_LOG_PROBS,
 * TRM_E_BAD_ADVANTAGE_RULE, TRM_E_NEEDS_ADVANTAGES. On error no output is written.
 *
 * The 2026 rules (docs/rules-2026.md): binary estimators and the advantage token rule are
 * judged in the same pass, on each chunk of eight tokens the scan reads: a bound decides most
 * tokens, the others are decided on their exact values (those of trm_token_values), so the
 * decisions are those of the exact values; TRM_AGG_GEO comes from the scan's float64 delta sum. */
trm_status_t trm_mask(const trm_batch_t *batch, const trm_criterion_t *criteria,
                      int64_t n_criteria, const trm_options_t *options,
                      const trm_mask_out_t *out);

/* The token keep mask for a given row decision, without the row reductions: writes
 * out_keep_token[t] = valid(t) AND keep_row[row of t] AND every token criterion passes at t.
 * Row criteria in `criteria` are ignored (pass the same list as to trm_mask). Positions outside
 * every row are 0. Use it to build keep_token later than trm_mask, only when needed.
 *
 * keep_row: U8/BOOL [n_rows] view (stride_col). out_keep_token: uint8_t token grid, required.
 * Returns the statuses of trm_mask. On error no output is written. */
trm_status_t trm_token_keep(const trm_batch_t *batch, const trm_criterion_t *criteria,
                            int64_t n_criteria, const trm_options_t *options,
                            trm_view_t keep_row, trm_out_t out_keep_token);

/* One estimator at every position of the token grid (padded [n_rows, n_cols], packed
 * [n_cols]), valid or not: out = estimator(clamp(delta)). The batch must have no mask and no
 * lengths (every position is written); the NaN policy and reject_empty are not used.
 *
 * Accuracy (semantics §2): delta, k1, k2, abs correctly rounded; k3, ratio, tv within 4e-6
 * relative of float64 (measured worst: see docs/accuracy.md); k3 >= 0 and k3, tv monotone in
 * |delta| on each side of 0. The binary estimators (TRM_EST_BDIFF .. TRM_EST_BKL_SYM) need
 * logp_train and logp_roll (TRM_E_NEEDS_LOG_PROBS otherwise), use options->binary_eps and not
 * the clamp, and are the values trm_mask reduces (its binary row maxima equal these bit for
 * bit); F32/F16/BF16 inputs are computed in float32 SIMD where that is accurate (measured: bdiff
 * within 7e-8, the KL ones within 5e-6 relative), F64 inputs in float64.
 *
 * out_values: float token grid, required. Returns the statuses of trm_mask. On error no output
 * is written. */
trm_status_t trm_token_values(const trm_batch_t *batch, int32_t estimator,
                              const trm_options_t *options, trm_out_t out_values);

/* Importance weights (semantics §5) for a given row decision, without criteria: out_weights gets the
 * weights of `rule` at every position of the token grid (padded [n_rows, n_cols], packed
 * [n_cols]): 0 where the token is not counted, on rows whose keep_row is 0, and under
 * TRM_NAN_REJECT on rows with a NaN. Equal to the weights trm_mask writes for the same keep_row.
 *
 * keep_row: U8/BOOL [n_rows] view (stride_col), or dtype TRM_DTYPE_NONE for every row kept.
 * options->advantage is validated as trm_mask validates it (with the batch's advantages) and
 * not applied: the rows are those of keep_row, and token rules never zero weights (trm_mask's
 * weights ignore token criteria and the advantage token rule too).
 * out_weights: float token grid, required (may be NULL only when the grid is empty).
 * Returns the statuses of trm_mask and TRM_E_BAD_WEIGHT_RULE. On error no output is written. */
trm_status_t trm_importance_weights(const trm_batch_t *batch, const trm_options_t *options,
                                    trm_weight_rule_t rule, trm_view_t keep_row,
                                    trm_out_t out_weights);

/* ---------------------------------------------------------------------------------------------
 * GRPO group advantages over the rows that vote (semantics §4.10; docs/rules-2026.md).
 * ------------------------------------------------------------------------------------------ */

/* What a group with one voter gives. */
#define TRM_SINGLETON_ZERO 0 /* 0 (NeMo-RL; the default) */
#define TRM_SINGLETON_RAW 1  /* verl's rule: r / (1 + eps), or r without the std normalisation */

/* Inputs of trm_group_advantages: [n_rows] views (stride_col; stride_row must be 0). A zeroed
   struct apart from struct_size, n_rows and the views asks for the defaults. */
typedef struct trm_groups_t {
    uint32_t struct_size;  /* sizeof(trm_groups_t) */
    int32_t reserved;      /* must be 0 */
    int64_t n_rows;        /* B >= 0 */
    trm_view_t group;      /* I32/I64 [B]: group ids, any values in any order (no memory
                              proportional to their range is used) */
    trm_view_t reward;     /* F32/F64/F16/BF16 [B] */
    trm_view_t keep;       /* any dtype [B], nonzero = kept (typically keep_row); optional
                              (TRM_DTYPE_NONE = every row) */
    int32_t no_std_normalization; /* 0: adv = (r - mu) / (sigma + eps) (the default); 1: r - mu */
    int32_t singleton;     /* TRM_SINGLETON_* */
    int32_t eps_set;       /* 0: eps = 1e-6 (the default); 1: eps below */
    int32_t reserved2;     /* must be 0 */
    double eps;            /* read iff eps_set == 1: finite, >= 0 */
} trm_groups_t;

/* Outputs of trm_group_advantages: [n_rows] arrays (stride_row; stride_col must be 0), each
   optional, and the batch's counts (always written). */
typedef struct trm_group_out_t {
    uint32_t struct_size;  /* sizeof(trm_group_out_t) */
    int32_t reserved;      /* must be 0 */
    trm_out_t advantages;  /* float [B]: the advantage; 0 for rows that do not vote */
    trm_out_t voters;      /* int64_t [B]: voters in the row's group */
    trm_out_t mean;        /* double [B]: the row's group mean over voters (NaN without voters) */
    trm_out_t std;         /* double [B]: the sample std (n - 1) over voters (NaN below two) */
    int64_t n_groups;                /* distinct group ids */
    int64_t n_groups_no_voter;       /* groups without a voter */
    int64_t n_groups_one_voter;      /* groups with exactly one voter */
    int64_t n_rows_nonfinite_reward; /* kept rows whose reward is NaN or +-inf (they do not vote) */
} trm_group_out_t;

/* GRPO advantages where only kept rows with a finite reward vote (semantics §4.10): per group, with n
 * voters, mu = sum r / n and sigma = sqrt(sum (r - mu)^2 / (n - 1)) in float64 in row order;
 * a voter gets (r - mu) / (sigma + eps) (or r - mu) when n >= 2; with n = 1, 0 (SINGLETON_ZERO)
 * or r / (1 + eps) (or r) (SINGLETON_RAW); rows that do not vote get 0. Rows are grouped by a
 * sort (O(B log B), 8 B bytes of working memory), single-threaded: the result depends only on
 * the inputs.
 *
 * in, out: required. Outputs must not overlap each other or any input.
 * Returns TRM_OK, TRM_E_NULL_POINTER, TRM_E_BAD_STRUCT_SIZE, TRM_E_BAD_SIZE (n_rows negative),
 * TRM_E_TOO_LARGE (its 8 n_rows bytes of working memory above the limit, or not available), TRM_E_BAD_DTYPE, TRM_E_BAD_STRIDE,
 * TRM_E_OUT_OF_RANGE, TRM_E_ALIASING, TRM_E_BAD_OPTION (a flag not 0/1, an unknown singleton
 * rule, eps not finite and >= 0, a reserved field not 0). On error no output is written. */
trm_status_t trm_group_advantages(const trm_groups_t *in, trm_group_out_t *out);

/* ---------------------------------------------------------------------------------------------
 * Error bounds (semantics §7): the paper's bounds on the surrogate-objective error, as a calculator.
 * ------------------------------------------------------------------------------------------ */

/* Inputs of trm_bounds_compute. Divergences are in nats; sums in the bounds run over t = 1..T.
   kl_max is delta = D_KL^{tok,max}, the maximum token KL over ALL reachable contexts: a maximum
   taken over a training batch is only a plug-in estimate of it, and bounds computed from it are
   estimates, not guarantees.
   Must be set: struct_size, T, kl_max, kl_seq, and eps and tv_seq (0 is a real divergence; NaN
   asks for the Pinsker value). A zero reward_range means 1; dbar NULL means eps everywhere. */
typedef struct trm_bound_inputs_t {
    uint32_t struct_size; /* sizeof(trm_bound_inputs_t) */
    int32_t reserved;     /* must be 0 */
    int64_t T;            /* sequence length, >= 1 */
    double kl_max;        /* delta = D_KL^{tok,max}, finite and >= 0 */
    double kl_seq;        /* D_KL^{seq}, finite and >= 0 */
    double eps;           /* D_TV^{tok,max}, finite and >= 0; NaN = derive sqrt(kl_max / 2) */
    double tv_seq;        /* D_TV^{seq}, finite and >= 0; NaN = derive sqrt(kl_seq / 2) */
    double reward_range;  /* r_max - r_min, finite and > 0 (0 = 1); every bound is multiplied by
                             it */
    const double *dbar;   /* per-position mean TV Dbar_1..Dbar_T (dbar_count == T, each finite
                             and >= 0), read only during the call; NULL = eps at every position */
    int64_t dbar_count;   /* elements of dbar; must be 0 when dbar is NULL */
} trm_bound_inputs_t;

/* Every bound of semantics §7, each multiplied by reward_range; field order and names follow
   Tests/vectors/bounds.json. Values are >= 0 and never NaN; the classical bounds (order T^2)
   can overflow to +inf for extreme inputs. Must be set: struct_size (reserved must be 0); the
   rest is output. */
typedef struct trm_bounds_t {
    uint32_t struct_size; /* sizeof(trm_bounds_t) */
    int32_t reserved;     /* must be 0 */
    double classical_tv;  /* classical (TV): 2 T (T-1) eps^2; order T^2 */
    double classical_kl;  /* classical (KL): T (T-1) delta; order T^2 */
    double coupling;      /* 4 min(1, eps) sum_t min(1, (t-1) eps); order T */
    double pm_kl;         /* Pinsker-marginal (KL):
                             4 min(1, sqrt(delta/2)) sum_t min(1, sqrt((t-1) delta/2)); T^1.5 */
    double pm_tv;         /* Pinsker-marginal (TV):
                             4 min(1, eps) sum_t min(1, sqrt((t-1) delta/2)); order T^1.5 */
    double mixed_kl;      /* 4 T min(1, sqrt(delta/2)) min(1, sqrt(kl_seq/2)); order T */
    double mixed_tv;      /* 4 T min(1, eps) min(1, tv_seq); order T */
    double linear;        /* 4 sum_t Dbar_t; order T */
    double adaptive;      /* 4 sum_t Dbar_t min(1, (T-t) eps, sqrt((T-t) delta/2)); set by Dbar */
    double unified;       /* B* = min(pm_kl, pm_tv, mixed_kl, mixed_tv, coupling, adaptive) */
} trm_bounds_t;

/* Every error bound of semantics §7 for one set of inputs.
 *
 * The sums are the exact finite sums (not the paper's closed-form upper bounds such as
 * (4/3) T^1.5 delta). Without dbar the work is O(log T) plus at most 1024 terms, so T = 10^9
 * takes microseconds; with dbar, linear and adaptive take one compensated O(T) pass over it.
 * Accuracy: a few ulps relative per bound (tested to 1e-12 against Tests/vectors/bounds.json).
 *
 * inputs: required. out: required; written only on success, after every input has been read, so
 * out may alias inputs or dbar (the one exception to the no-overlap rule above). Thread-safe; no
 * allocation.
 *
 * Returns TRM_OK; TRM_E_NULL_POINTER (inputs or out NULL, or dbar NULL with dbar_count != 0);
 * TRM_E_BAD_STRUCT_SIZE (a struct_size smaller than this ABI's struct); TRM_E_BAD_OPTION (a
 * reserved field not 0); TRM_E_BAD_SIZE (dbar_count negative); TRM_E_OUT_OF_RANGE (dbar's extent
 * overflows the address space); TRM_E_BAD_BOUND_INPUT (T < 1; kl_max, kl_seq negative or not
 * finite; eps, tv_seq negative or infinite; reward_range not finite and > 0; dbar_count != T or
 * a dbar element negative or not finite). On error out is not written. */
trm_status_t trm_bounds_compute(const trm_bound_inputs_t *inputs, trm_bounds_t *out);

/* ---------------------------------------------------------------------------------------------
 * Exact per-position divergence from logits (semantics §6), and the exact TRM.
 *
 * Positions form a [n_rows, n_cols] grid ([B, T]; a flat [N, V] tensor is n_rows = N,
 * n_cols = 1). Each position has a vector along a third axis: the vocabulary (V entries) or the
 * rollout's top-k entries. Per-position inputs (mask, token ids) are trm_view_t over the grid
 * (stride_row, stride_col); per-position outputs are float trm_out_t over the grid.
 *
 * Exact TRM is two calls: trm_exact_kl writes the per-position KL into a float [B, T] array, then
 * trm_mask takes that array as `values` (estimator TRM_EST_VALUE) with the same validity mask and
 * the criteria {TRM_AGG_MAX, TRM_EST_VALUE, -INFINITY, 0.1} and {TRM_AGG_MEAN, TRM_EST_VALUE,
 * -INFINITY, 0.002} (the paper's TRM-Max&Avg on the exact KL, semantics §4.2).
 * ------------------------------------------------------------------------------------------ */

/* A strided 3-D input [n_rows, n_cols, depth]: element [i, t, v] is at
   data + (i * stride_row + t * stride_col + v * stride_depth) * element_size. */
typedef struct trm_view3_t {
    const void *data;     /* element [0, 0, 0]; may be NULL iff the array has no elements */
    int32_t dtype;        /* TRM_DTYPE_* (which ones: per argument) */
    int32_t reserved;     /* must be 0 */
    int64_t stride_row;   /* elements between rows */
    int64_t stride_col;   /* elements between columns (positions of a row) */
    int64_t stride_depth; /* elements between vocabulary (or top-k) entries */
} trm_view3_t;

/* Rollout and training logits of the same positions, with optional mask and sampled tokens. The
   fields name their side (`rollout` is pi_roll, `train` is pi_theta); the Python and Swift APIs
   take the training side first, as everywhere else. Must be set: struct_size, n_rows, n_cols,
   vocab, rollout and train (zero mask and token_ids = absent). */
typedef struct trm_logit_pair_t {
    uint32_t struct_size;  /* sizeof(trm_logit_pair_t) */
    int32_t reserved;      /* must be 0 */
    int64_t n_rows;        /* >= 0 */
    int64_t n_cols;        /* >= 0 */
    int64_t vocab;         /* V >= 1 (any value >= 0 when the grid is empty) */
    trm_view3_t rollout;   /* a: F32, BF16 or F16 [n_rows, n_cols, V]; p = softmax(a / tau) */
    trm_view3_t train;     /* b: F32, BF16 or F16 (may differ from a's); q = softmax(b / tau) */
    trm_view_t mask;       /* U8/BOOL [n_rows, n_cols], nonzero = the position counts; optional
                              (TRM_DTYPE_NONE = all). Masked positions' logits and token ids are
                              never read and their outputs are 0. */
    trm_view_t token_ids;  /* I32/I64 [n_rows, n_cols]: the sampled token y at each position, in
                              0 ..< V at counted positions; optional (needed for the token
                              log-probability outputs) */
} trm_logit_pair_t;

/* Options of the logit functions. */
typedef struct trm_logit_options_t {
    uint32_t struct_size; /* sizeof(trm_logit_options_t) */
    int32_t threads;      /* >= 0; 0 = automatic (every processor online); see above */
    double temperature;   /* tau: finite, > 0, with 1/tau a normal float32; 0 = 1 (the default) */
} trm_logit_options_t;

/* Outputs of trm_exact_kl: float [n_rows, n_cols] arrays, each may be absent (data NULL). Must be
   set: struct_size. */
typedef struct trm_exact_kl_out_t {
    uint32_t struct_size;       /* sizeof(trm_exact_kl_out_t) */
    int32_t reserved;           /* must be 0 */
    trm_out_t kl;               /* KL(p || q) = sum_v p_v log(p_v / q_v) */
    trm_out_t tv;               /* (1/2) sum_v |p_v - q_v| (a second pass over the logits) */
    trm_out_t logp_roll_token;  /* log p_y (needs token_ids) */
    trm_out_t logp_train_token; /* log q_y (needs token_ids) */
} trm_exact_kl_out_t;

/* Exact KL(pi_roll || pi_theta) per position from full logits, with optional TV and the sampled
 * tokens' log-probabilities, in one streaming pass over the two logit tensors (TV: two passes);
 * no temporaries beyond O(threads) (semantics §6).
 *
 * -inf logits are masked vocabulary: p_v = 0 contributes nothing (0 log 0 = 0); p_v > 0 with
 * q_v = 0 gives KL = +inf. A position whose logits include NaN or +inf, or whose a (or b) is
 * -inf everywhere, has NaN outputs.
 *
 * Accuracy against float64 on the same (float32/bfloat16/float16) logits:
 * |KL - ref| <= 1e-4 * ref + 1e-8 for V <= 262144 and |logits / tau| <= 60 (semantics §6); the KL of
 * two identical or shifted logit vectors is 0 within 1e-8. TV: within 1e-5 relative plus 1e-8;
 * token log-probabilities: within 1e-6 relative plus 2e-7. Measured worst cases: docs/exact-kl.md.
 * Asking for TV or token log-probabilities makes the KL pass form a - b in float64 on every entry
 * (about 20% slower); the KL alone uses float32 where that is provably accurate enough.
 *
 * pair, options, out: required; each output inside out may be absent. Outputs must not overlap
 * each other or any input. Thread-safe; bit-identical results for every options->threads.
 *
 * Returns TRM_OK, TRM_E_NULL_POINTER, TRM_E_BAD_STRUCT_SIZE, TRM_E_BAD_SIZE (negative sizes,
 * overflowing products, V = 0 with positions), TRM_E_BAD_DTYPE, TRM_E_BAD_STRIDE,
 * TRM_E_OUT_OF_RANGE, TRM_E_ALIASING, TRM_E_BAD_INPUTS (token log-probabilities asked without
 * token_ids), TRM_E_BAD_OPTION (threads < 0, a reserved field not 0), TRM_E_BAD_TEMPERATURE,
 * TRM_E_BAD_TOKEN_ID (a counted position's id outside 0 ..< V). On error no output is written. */
trm_status_t trm_exact_kl(const trm_logit_pair_t *pair, const trm_logit_options_t *options,
                          const trm_exact_kl_out_t *out);

/* The rollout's top-k log-probabilities (vLLM `logprobs=k`) and the training logits. Must be set:
   every field but mask (zero = absent). */
typedef struct trm_topk_batch_t {
    uint32_t struct_size; /* sizeof(trm_topk_batch_t) */
    int32_t reserved;     /* must be 0 */
    int64_t n_rows;       /* >= 0 */
    int64_t n_cols;       /* >= 0 */
    int64_t vocab;        /* V >= 1 (any value >= 0 when the grid is empty) */
    int64_t k;            /* entries per position, >= 0 */
    trm_view3_t rollout_logprobs; /* F32/BF16/F16/F64 [n_rows, n_cols, k]: log pi_roll of each
                                     listed token, at the rollout's temperature */
    trm_view3_t rollout_ids;      /* I32/I64 [n_rows, n_cols, k]: distinct ids in 0 ..< V */
    trm_view3_t train;            /* F32/BF16/F16 [n_rows, n_cols, V]: q = softmax(b / tau) */
    trm_view_t mask;              /* U8/BOOL [n_rows, n_cols]; optional, as in trm_logit_pair_t */
} trm_topk_batch_t;

/* Lower bound on KL(pi_roll || pi_theta) per position from the rollout's top-k (semantics §6):
 * KL_lb = sum_k p_k log(p_k / q_k) + (1 - P) log((1 - P) / (1 - Q)), P = sum_k p_k,
 * Q = sum_k q_k (the log-sum inequality over the listed tokens and the rest). Terms with zero
 * mass are 0; P >= 1 (rounding) drops the remainder term; q_k = 0 < p_k or 1 - Q <= 0 < 1 - P
 * gives +inf. Computed without cancellation; within 1e-4 relative plus 1e-8 of float64 (q from a
 * float64 log-sum-exp at the exact 1/tau: two passes over the training logits, max then exp).
 *
 * batch, options: required. out_kl_lb: float [n_rows, n_cols], required unless the grid is
 * empty; 0 at masked positions. Returns the statuses of trm_exact_kl (TRM_E_BAD_TOKEN_ID also
 * for an id repeated within a position) and TRM_E_TOO_LARGE (k above 2^29 with a position to
 * check). k = 0 is valid: the bound is 0, and rollout_logprobs and rollout_ids may be NULL. On
 * error no output is written. */
trm_status_t trm_topk_kl_lower_bound(const trm_topk_batch_t *batch, const trm_logit_options_t *options,
                                     trm_out_t out_kl_lb);

/* ---------------------------------------------------------------------------------------------
 * Sharded rows (semantics §3, partial rows): a row split across context-parallel ranks.
 *
 * Each rank reduces its shard of every row into partials (trm_partials_compute), the partials of
 * the shards are merged (trm_partials_merge, in any order and grouping), and the keep decision is
 * taken from the merged partials (trm_partials_decide). Max, min, counts and the decision are
 * those of trm_mask on the whole row; sums and means are within semantics §3's tolerance of it (each
 * shard's float64 sum is within 2e-6 * sum|term| of its exact value, and float64 addition adds
 * at most a few float64 ulps), so a row whose sum or mean lies within that tolerance of a bound
 * may be decided either way. Token criteria (and anything positional) cannot be decided from
 * partials: keep_token of a shard is its mask AND keep_row of its row (trm_token_keep builds it,
 * with token criteria, from the shard's batch and the decided keep_row).
 * ------------------------------------------------------------------------------------------ */

/* Per-row partials of some estimators over one shard (or merged shards). The same struct
   describes outputs (trm_partials_compute, the merge's result) and inputs (the merge's operands,
   trm_partials_decide); inputs are only read. Every array is required: its data may be NULL only
   when it has no elements. 1-D arrays use stride_row (stride_col must be 0). Must be set: every
   field (reserved = 0). */
typedef struct trm_partials_t {
    uint32_t struct_size;      /* sizeof(trm_partials_t) */
    int32_t reserved;          /* must be 0 */
    int64_t n_rows;            /* B >= 0 */
    int64_t n_estimators;      /* E, 0..8 */
    const int32_t *estimators; /* TRM_EST_* [E], distinct: the columns of sum, max and min;
                                  may be NULL iff E == 0 */
    trm_out_t count;     /* int64_t [B]: counted tokens (NaN tokens are not counted under
                            TRM_NAN_SKIP) */
    trm_out_t nonfinite; /* int64_t [B]: valid tokens whose delta is NaN or +-inf */
    trm_out_t sum;       /* double [B, E]: sum of the estimator over counted tokens, in float64 */
    trm_out_t max;       /* float [B, E]: maximum, bitwise that of trm_token_values' outputs */
    trm_out_t min;       /* float [B, E]: minimum, likewise */
    /* A row with count 0 has sum = max = min = 0. Under TRM_NAN_REJECT a row with a NaN delta on
       a counted token has sum = max = min = NaN. */
} trm_partials_t;

/* The partials of every row of a batch (one shard): count, nonfinite, and per estimator the sum
 * (float64), max and min over counted tokens, in one pass (as trm_mask). The shard's batch holds
 * the same B rows as every other shard, each with this shard's tokens (padded or packed, any
 * validity, any dtype); a row with no token in this shard has count 0, the merge's identity.
 *
 * batch, options: required (options->nan_policy, clamp and threads are used; reject_empty is
 * validated and ignored). out: required, out->n_rows == batch->n_rows; out->estimators: `value`
 * iff the batch gives `values`. Outputs must not overlap each other or any input.
 *
 * Returns TRM_OK and the statuses of trm_mask (TRM_E_BAD_ESTIMATOR also for a repeated
 * estimator; TRM_E_BAD_SIZE for n_estimators outside 0..8), TRM_E_BAD_PARTIALS (out->n_rows !=
 * batch->n_rows). On error no output is written. */
trm_status_t trm_partials_compute(const trm_batch_t *batch, const trm_options_t *options,
                                  const trm_partials_t *out);

/* Merges the partials of two shards of the same rows: per row, counts and nonfinite add; per
 * estimator, sums add (float64), max and min combine, and a side whose count is 0 is the identity
 * (its sum, max and min are ignored). A NaN max or min on a side with tokens gives NaN (fail
 * closed: a shard's NaN under TRM_NAN_REJECT stays in the merged row). Merging is commutative and
 * associative except for the rounding of float64 sums.
 *
 * a, b, out: required; same n_rows and the same estimators in the same order. out may be a or b
 * itself (each of its arrays the very array, same data and strides, of the same field): rows are
 * read before they are written, so `trm_partials_merge(&acc, &shard, &acc)` accumulates. Any
 * other overlap between out and an input, or within out, is refused.
 *
 * Returns TRM_OK, TRM_E_NULL_POINTER, TRM_E_BAD_STRUCT_SIZE, TRM_E_BAD_SIZE, TRM_E_BAD_STRIDE,
 * TRM_E_OUT_OF_RANGE, TRM_E_ALIASING, TRM_E_BAD_ESTIMATOR (unknown or repeated), TRM_E_BAD_OPTION
 * (a reserved field not 0), TRM_E_BAD_PARTIALS (different rows or estimators; a negative count;
 * counts whose sum overflows). On error no output is written. */
trm_status_t trm_partials_merge(const trm_partials_t *a, const trm_partials_t *b, const trm_partials_t *out);

/* The keep decision from (merged) partials, by the rule of trm_mask: a row with count 0 has
 * statistics 0 and is kept unless options->reject_empty; any other row is kept iff lo <= stat <=
 * hi for every criterion, where stat is the partial max or min, the float64 sum rounded to
 * float, or sum / count rounded to float (mean); a NaN statistic fails every criterion.
 * Writes the outputs trm_mask would for these criteria: keep_row, count, nonfinite (copied from
 * the partials), row_stats [n_rows, n_criteria] and rejected [n_criteria].
 *
 * partials: required. criteria: n_criteria entries (0..64), aggregations TRM_AGG_MAX, MIN, SUM or
 * MEAN of estimators the partials hold; may be NULL iff n_criteria == 0. options: required; only
 * reject_empty is used (the other fields are validated). out: required; keep_token must be
 * absent. Outputs must not overlap each other or the partials.
 *
 * Returns TRM_OK, TRM_E_NULL_POINTER, TRM_E_BAD_STRUCT_SIZE, TRM_E_BAD_SIZE, TRM_E_BAD_STRIDE,
 * TRM_E_OUT_OF_RANGE, TRM_E_ALIASING, TRM_E_BAD_ESTIMATOR (unknown or repeated in the partials;
 * a criterion's estimator the partials do not hold), TRM_E_BAD_AGGREGATION,
 * TRM_E_BAD_NAN_POLICY, TRM_E_BAD_THRESHOLD, TRM_E_BAD_OPTION, TRM_E_NEEDS_TOKENS (a token
 * criterion; keep_token asked for), TRM_E_BAD_PARTIALS (a negative count). On error no output is
 * written. */
trm_status_t trm_partials_decide(const trm_partials_t *partials, const trm_criterion_t *criteria,
                                 int64_t n_criteria, const trm_options_t *options,
                                 const trm_mask_out_t *out);

/* ---------------------------------------------------------------------------------------------
 * Rollout correction in verl's arithmetic (docs/rollout-correction.md): rejection options, importance
 * weights and their statistics in one pass per row, for trainers (verl) that define them on a
 * weight mask and in the log-ratio's own dtype.
 *
 * Differences from trm_mask, each what verl computes:
 * - the mask may act as a weight (mask_weights = 1): sums multiply each term by m[i,t], means
 *   divide by sum_t m[i,t] + 1e-8 (that sum rounded to mean_dtype), max/min run over m != 0;
 * - per-token values are computed in compute_dtype, each operation rounded to it:
 *   d = clamp(delta, -clamp, clamp); k1 = -d; k2 = 0.5 * (d * d); k3 = (exp(d) - 1) - d (the
 *   naive form: it can be slightly negative for tiny |d|); exp is the correctly rounded one;
 *   masked sums (the seq_sum statistic, the sequence weight's row sum) are float64 sums rounded to
 *   the sums' dtype: compute_dtype, promoted with the mask's dtype when the mask is a float dtype
 *   (torch multiplies the values by the mask); sequence weights are computed in that dtype;
 *   means are computed in the wider of the sums' dtype and mean_dtype; bounds are rounded to
 *   nearest in the dtype of the statistic they are compared with, then compared inclusively;
 * - the output mask is m[i,t] * keep[i,t] in the mask's own dtype (its values survive);
 * - sequence weights clamp the ROW SUM of unclamped log-ratios: exp(clamp(sum_t delta * m));
 *   weights are written at every position of a row as w * m (verl's formula: a NaN log-ratio
 *   gives NaN even where m = 0) and are NOT zeroed on rows the rejections remove.
 * Rows are never split across threads; float64 sums in a fixed order, per-row records reduced in
 * row order: bit-identical results for every thread count.
 * ------------------------------------------------------------------------------------------ */

/* Levels of a rejection option (verl's token_kN, seq_sum_kN, seq_mean_kN, seq_max_kN). */
#define TRM_REJECT_TOKEN 0    /* per token: keep the token iff lo <= k(d_t) <= hi */
#define TRM_REJECT_SEQ_SUM 1  /* the row iff lo <= sum_t m_t k(d_t) <= hi */
#define TRM_REJECT_SEQ_MEAN 2 /* the row iff lo <= sum_t m_t k(d_t) / (sum_t m_t + 1e-8) <= hi */
#define TRM_REJECT_SEQ_MAX 3  /* the row iff lo <= max_{m_t != 0} k(d_t) <= hi (0 for a row
                                 without m_t != 0) */

/* Most rejection options one call takes (verl has eleven). */
#define TRM_MAX_REJECTIONS 16

/* One rejection option. A NaN statistic fails (fail closed); +-inf deltas are clamped first. */
typedef struct trm_rejection_t {
    int32_t level;     /* TRM_REJECT_* */
    int32_t estimator; /* TRM_EST_K1, TRM_EST_K2 or TRM_EST_K3 */
    double lo;         /* -INFINITY = none. verl's k1 "lower_upper" keeps log(lower) <= k1 <=
                          log(upper); its k2/k3 options have lo = -INFINITY */
    double hi;         /* +INFINITY = none */
} trm_rejection_t;

/* A strided output of a caller-chosen dtype over the token grid (padded [n_rows, n_cols], packed
   [n_cols] with stride_row 0). */
typedef struct trm_typed_out_t {
    void *data;         /* NULL = not wanted */
    int32_t dtype;      /* TRM_DTYPE_* (which ones: per field) */
    int32_t reserved;   /* must be 0 */
    int64_t stride_row; /* elements between rows (padded); 0 for packed */
    int64_t stride_col; /* elements between tokens */
} trm_typed_out_t;

/* What to compute. */
typedef struct trm_correction_config_t {
    uint32_t struct_size;  /* sizeof(trm_correction_config_t) */
    int32_t compute_dtype; /* F32, F64, F16 or BF16: the dtype of the per-token arithmetic (verl:
                              the log-ratio's dtype) */
    int32_t mean_dtype;    /* F32, F64, F16 or BF16: the dtype of mean denominators
                              sum_t m + 1e-8 (verl: the mask's dtype when it is a float dtype, else
                              float32, torch's default) */
    int32_t mask_weights;  /* 1: the mask's values weight every sum and mean; 0: nonzero = 1 */
    double clamp;          /* the per-token clamp of d and of the sequence weight's row sum, > 0
                              (verl: 20) */
    int32_t threads;       /* >= 0; 0 = automatic */
    int32_t n_rejections;  /* 0..TRM_MAX_REJECTIONS */
    const trm_rejection_t *rejections; /* n_rejections entries, ANDed; NULL iff none */
    int32_t weights;       /* 1: compute importance weights under weight_rule; 0: none */
    int32_t normalize;     /* 1: divide the weights by their batch mean (weight_norm_sum /
                              weight_norm_count of the statistics) when it is > 1e-8, in the
                              weights' dtype (verl's rollout_is_batch_normalize on one process);
                              0: leave them (a distributed caller reduces the two sums across
                              ranks and calls trm_weights_divide) */
    trm_weight_rule_t weight_rule; /* level TRM_WEIGHT_TOKEN (w_t = exp(clamp(d_t))) or
                              TRM_WEIGHT_SEQUENCE (w_i = exp(clamp(sum_t m_t delta_t))); mode
                              TRM_WEIGHT_MODE_TRUNCATE (min(w * m, hi); lo must be 0; statistics
                              use 1/hi as the lower bound) or TRM_WEIGHT_MODE_MASK (w * m if
                              lo <= w * m <= hi, else 0; 0 < lo) */
} trm_correction_config_t;

/* Statistics of the importance weights. w: the weights written (before normalisation), raw: the
   weights before truncation or masking (w * m), S_i = sum_t m_t delta_t (unclamped), M = sum of m,
   lower = lo (mask) or 1/hi (truncate). A NaN contributes NaN (as in verl). */
typedef struct trm_weight_stats_t {
    double mean;          /* sum w m / (M + 1e-8) */
    double max;           /* token: max of w over m != 0; sequence: exp(min(max_i S_i, clamp)) */
    double min;           /* token: min of w over m != 0; sequence: exp(min_i S_i) */
    double std;           /* sqrt(max(0, mean(c^2) - mean(c)^2)), c = min(max(w, 0), hi), means
                             weighted by m over M + 1e-8; 0 unless M > 1 */
    double eff_sample_size; /* 1 / (sum m (c / (mean(c) + 1e-8))^2 / (M + 1e-8)); +inf when every
                               c is 0 (verl raises ZeroDivisionError) */
    double ratio_fraction_high; /* token: sum m [raw > hi] / (M + 1e-8); sequence: fraction of all
                                   rows with S_i > log(hi) (log in float32, as verl) */
    double ratio_fraction_low;  /* likewise with raw < lower, S_i < log(lower) */
    double seq_mean;      /* over ALL rows of r_i = sum_t w m / (M_i + 1e-8) */
    double seq_std;       /* Bessel-corrected std of r_i over all rows; 0 for one row */
    double seq_max;
    double seq_min;
    double seq_max_deviation; /* max_i |r_i - 1| */
    double seq_fraction_high; /* fraction of all rows whose raw mean sum_t raw m / (M_i + 1e-8)
                                 exceeds hi */
    double seq_fraction_low;  /* ... is below lower */
    double oob_ratio;     /* mask mode: sum m [raw < lo or raw > hi] / (M + 1e-8); NaN otherwise */
    double norm_sum;      /* batch normalisation numerator: token level sum w m; sequence level
                             sum of r_i over rows with M_i > 0 */
    double norm_count;    /* its denominator: M; sequence level: rows with M_i > 0 */
    double norm_factor;   /* the divisor applied when normalize = 1 (norm_sum / max(norm_count,
                             1e-8), with token level's M + 1e-8 as verl), else 1 */
} trm_weight_stats_t;

/* Statistics of one rejection option (statistic s: the per-token value for TRM_REJECT_TOKEN, the
   row statistic broadcast over its tokens otherwise; "valid rows": M_i > 0). */
typedef struct trm_rejection_stats_t {
    double mean;          /* sum m s / (M + 1e-8) */
    double max;           /* sequence levels: max over valid rows; token: over m != 0 */
    double min;
    double std;           /* as trm_weight_stats_t.std with c = min(max(s, lo or 0), hi) */
    double fraction_high; /* sequence levels: fraction of valid rows with s > hi; token: sum m
                             [s > hi] / (M + 1e-8) */
    double fraction_low;  /* likewise s < lo; 0 when lo = -INFINITY */
    double seq_mean;      /* over valid rows of the row statistic (token level: the row's mean
                             sum m s / (M_i + 1e-8)) */
    double seq_std;       /* Bessel-corrected; 0 for fewer than two valid rows */
    double seq_max;
    double seq_min;
    double seq_max_deviation; /* max |row statistic| over valid rows */
    double seq_fraction_high; /* fraction of valid rows whose row statistic is > hi */
    double seq_fraction_low;  /* ... < lo */
    double masked_fraction;   /* sum m (1 - keep) / (M + 1e-8), keep of this option alone */
    double seq_masked_fraction; /* valid rows with a token m != 0 this option rejects / valid
                                   rows (0 without valid rows) */
} trm_rejection_stats_t;

/* verl's off-policy diagnostics (need logp_train and logp_roll; NaN for a log_ratio input).
   Row means mean_i(x) = sum_t m x / (M_i + 1e-8) run over ALL rows (empty rows give 0). */
typedef struct trm_offpolicy_stats_t {
    double kl;               /* sum m (lr - lt) / (M + 1e-8) */
    double k3_kl;            /* sum m ((exp(d) - d) - 1) / (M + 1e-8), d unclamped */
    double training_ppl;     /* mean over rows of exp(-mean_i(lt)) */
    double training_log_ppl; /* mean over rows of -mean_i(lt) */
    double rollout_ppl;      /* likewise for lr */
    double rollout_log_ppl;
    double log_ppl_diff;     /* mean over rows of mean_i(lr) - mean_i(lt) */
    double log_ppl_abs_diff; /* mean over rows of its absolute value */
    double log_ppl_diff_max;
    double log_ppl_diff_min;
    double ppl_ratio;        /* mean over rows of exp(mean_i(lr) - mean_i(lt)) */
    double chi2_token;       /* sum m exp(clamp(d))^2 / (M + 1e-8) - 1 */
    double chi2_seq;         /* mean over rows of exp(2 clamp(S_i)) - 1 */
} trm_offpolicy_stats_t;

/* Every statistic of one trm_rollout_correction call, float64, reduced in row order. */
typedef struct trm_correction_stats_t {
    uint32_t struct_size;    /* sizeof(trm_correction_stats_t) */
    int32_t reserved;        /* must be 0 */
    int64_t n_rows;          /* B */
    int64_t n_rows_valid;    /* rows with M_i > 0 */
    int64_t n_tokens_valid;  /* positions with m != 0 */
    double mask_sum;         /* M = sum of m over the batch (counts when mask_weights = 0) */
    double masked_fraction;  /* sum m (1 - keep) / (M + 1e-8), keep of all options together */
    double seq_masked_fraction; /* rows with a token m != 0 rejected / ALL rows (0 when B = 0) */
    trm_weight_stats_t weights;        /* all NaN when config->weights == 0 */
    trm_offpolicy_stats_t offpolicy;
    trm_rejection_stats_t rejections[TRM_MAX_REJECTIONS]; /* by option index; NaN past
                                                              n_rejections */
} trm_correction_stats_t;

/* Row records (docs/sharded-rows.md): per row, the sums, extrema and decisions the statistics
   are reduced from, as float64 fields, row-major, TRM_CORRECTION_ROW_WIDTH(n_rejections) per
   row: TRM_CORRECTION_ROW_FIELDS fields of the row (M_i, valid count, S_i, sum m lt, sum m lr,
   sum m k3_kl, sum m exp(d)^2, rejected mass, any_rejected (0/1), sum m raw, sum m oob, then
   the weights' moments: sum m w, max, min, sum m [raw > hi], sum m [raw < lower], sum m c,
   sum m c^2), then per rejection option TRM_CORRECTION_OPTION_FIELDS (its moments as above, the
   row statistic, rejected mass, any_rejected). A row's record depends on that row alone, so a
   batch split by rows into shards (data-parallel ranks) gives each row the record it has in the
   whole batch, and trm_correction_reduce of the shards' records in order gives the statistics
   of one call on the concatenated batch, bit for bit. The three facts below are the call's
   (refused otherwise, TRM_E_BAD_CORRECTION_ROWS): the same struct describes the records to
   trm_correction_reduce. */
#define TRM_CORRECTION_ROW_FIELDS 18
#define TRM_CORRECTION_OPTION_FIELDS 10
#define TRM_CORRECTION_ROW_WIDTH(n_rejections) \
    (TRM_CORRECTION_ROW_FIELDS + TRM_CORRECTION_OPTION_FIELDS * (n_rejections))
/* Most shards one trm_correction_reduce takes. */
#define TRM_MAX_CORRECTION_SHARDS 65536

typedef struct trm_correction_rows_t {
    double *data;          /* n_rows * TRM_CORRECTION_ROW_WIDTH(config->n_rejections) doubles;
                              NULL = not wanted (the other fields are then ignored) */
    int64_t n_rows;        /* rows of data: the batch's n_rows */
    int32_t mask_dtype;    /* the batch mask's dtype; TRM_DTYPE_NONE without a mask */
    int32_t weights_dtype; /* out->weights.dtype; TRM_DTYPE_NONE when no weights are written */
    int32_t log_probs;     /* 1: the batch gave logp_train and logp_roll; 0: log_ratio */
    int32_t reserved;      /* must be 0 */
} trm_correction_rows_t;

/* Outputs of trm_rollout_correction; each may be absent. */
typedef struct trm_correction_out_t {
    uint32_t struct_size;  /* sizeof(trm_correction_out_t) */
    int32_t reserved;      /* must be 0 */
    trm_typed_out_t mask;  /* the token grid m * keep in the MASK's dtype (dtype must equal the
                              batch mask's; without a mask any dtype, m = 1): keep = every
                              option passes (a sequence option's decision covers its whole row);
                              a float m keeps its value, and is multiplied by 0 where rejected
                              (IEEE: -0.0, NaN for a NaN or infinite m). Positions outside every
                              row are 0 */
    trm_out_t keep_row;    /* uint8_t [n_rows]: 1 = no token with m != 0 of the row is rejected */
    trm_typed_out_t weights; /* F32, F64, F16 or BF16 token grid (verl: the dtype of log-ratio *
                                mask); needs config->weights. Positions outside every row are 0 */
    trm_correction_stats_t *stats; /* NULL = not wanted; written last, on success only */
    trm_correction_rows_t rows; /* the row records (data NULL = not wanted; a zeroed field is
                                   that), for trm_correction_reduce across shards */
} trm_correction_out_t;

/* Rollout correction (verl's compute_rollout_correction_and_rejection_mask arithmetic): the
 * rejection options' mask, importance weights and every statistic above, reading each row once.
 * With float32 compute_dtype, contiguous float32 log-probs (or log_ratio), a contiguous
 * bool/uint8/float32 mask (or none) and float32 weights (or none), one pass eight positions at a
 * time computes everything from the caller's arrays (sequence weights and a rejected row's mask:
 * a second pass over that row, in cache); any other call widens each row into per-thread scratch
 * (float64) first. Both give the same bits: each float64 sum of a row is kept in eight lanes
 * (lane j: positions p = j mod 8, in order) added in a fixed tree.
 *
 * batch: required; logp_train with logp_roll (delta = logp_train - logp_roll rounded once to
 * compute_dtype), or log_ratio; a values input is refused (TRM_E_BAD_INPUTS). Validity: a
 * position counts with weight m = mask (0 where past lengths), nonzero = valid. config, out:
 * required; each output in out may be absent.
 *
 * Accuracy: per-token values are those of compute_dtype arithmetic with a correctly rounded exp
 * (verl's torch exp is within 1 ulp of it: a value within an ulp of a bound can be decided
 * differently); sums are float64 (verl sums in compute_dtype: statistics within its rounding).
 *
 * Returns TRM_OK, the statuses of trm_mask that concern the batch (TRM_E_NULL_POINTER,
 * TRM_E_BAD_STRUCT_SIZE, TRM_E_BAD_SIZE, TRM_E_BAD_DTYPE (also an unsupported compute_dtype,
 * mean_dtype or output dtype), TRM_E_BAD_STRIDE, TRM_E_OUT_OF_RANGE, TRM_E_ALIASING,
 * TRM_E_BAD_LAYOUT, TRM_E_BAD_INPUTS, TRM_E_BAD_OFFSETS, TRM_E_BAD_LENGTHS, TRM_E_BAD_OPTION
 * (clamp not > 0, threads < 0, a flag not 0/1, a reserved field not 0, weights wanted without
 * config->weights), TRM_E_NEEDS_ADVANTAGES (the batch gives both advantages and
 * row_advantages)), TRM_E_BAD_REJECTION, TRM_E_BAD_CORRECTION_WEIGHTS, TRM_E_TOO_LARGE (its
 * working memory, "Limits" above, beyond 4 GiB), TRM_E_BAD_CORRECTION_ROWS (out->rows does not
 * describe this call). On error no output is written. */
trm_status_t trm_rollout_correction(const trm_batch_t *batch, const trm_correction_config_t *config,
                                    const trm_correction_out_t *out);

/* The statistics of one trm_rollout_correction call on a batch split by rows into n_shards
 * shards (data-parallel ranks; shard k holds rows after those of shards 0..k-1), from the row
 * records each shard's call wrote (out->rows), reduced in shard order by the code that reduces
 * one call's records: equal, bit for bit, to the stats of one call on the concatenated batch
 * with the same config (nothing is divided here: norm_factor is the divisor a call with
 * normalize = 1 applies).
 *
 * config: required, as given to each shard's call. shards: n_shards descriptors, read only
 * (may be NULL when n_shards is 0: the stats of an empty batch); each data may be NULL when its
 * n_rows is 0; every shard must carry the same mask_dtype, weights_dtype and log_probs. stats: required,
 * must not overlap a shard's data; written on success only. Memory: a record per row and per row
 * and option ("Limits" above). Thread-safe (shares nothing).
 *
 * Returns TRM_OK, TRM_E_NULL_POINTER, TRM_E_BAD_STRUCT_SIZE, TRM_E_BAD_SIZE (n_shards outside
 * 0..TRM_MAX_CORRECTION_SHARDS, a negative n_rows, sizes or a row total that overflow),
 * TRM_E_BAD_DTYPE (config dtypes; an unknown mask_dtype; a weights_dtype not F32, F64, F16 or
 * BF16), TRM_E_OUT_OF_RANGE, TRM_E_ALIASING (stats overlaps a shard's data), TRM_E_BAD_OPTION
 * (as trm_rollout_correction's config; log_probs not 0/1; a reserved field not 0; weights_dtype
 * set without config->weights), TRM_E_BAD_REJECTION, TRM_E_BAD_CORRECTION_WEIGHTS,
 * TRM_E_BAD_CORRECTION_ROWS, TRM_E_TOO_LARGE. On error nothing is written. */
trm_status_t trm_correction_reduce(const trm_correction_config_t *config, const trm_correction_rows_t *shards,
                                   int64_t n_shards, trm_correction_stats_t *stats);

/* Divides every weight inside the rows of a token grid by `divisor`, in place, in the weights'
 * dtype (verl's batch normalisation, after a distributed caller has reduced norm_sum and
 * norm_count of trm_weight_stats_t across ranks). The grid is described as in trm_batch_t:
 * layout, n_rows, n_cols and, for TRM_LAYOUT_PACKED, offsets (I32/I64 [n_rows + 1]); positions
 * outside every row are untouched.
 *
 * weights: F32, F64, F16 or BF16 grid, read and written; may be NULL only when the grid is empty.
 * Returns TRM_OK, TRM_E_NULL_POINTER, TRM_E_BAD_SIZE, TRM_E_BAD_DTYPE, TRM_E_BAD_STRIDE,
 * TRM_E_OUT_OF_RANGE, TRM_E_ALIASING (offsets overlap the weights), TRM_E_BAD_LAYOUT,
 * TRM_E_BAD_OFFSETS, TRM_E_BAD_OPTION (a reserved field not 0), TRM_E_BAD_DIVISOR (not finite
 * and > 0). On error nothing is written. */
trm_status_t trm_weights_divide(int32_t layout, int64_t n_rows, int64_t n_cols, trm_view_t offsets, double divisor,
                                trm_typed_out_t weights);

#ifdef __cplusplus
}
#endif

#endif /* TRMASK_H */

/* libFuzzer target over every C entry point of include/trmask.h (issue 13).
 *
 * The input decodes into shapes, strides, dtypes, layouts, NULLs, struct sizes, thresholds,
 * options and thread counts; every array and every struct the call reads or writes lives in its
 * own slot of memory with PROT_NONE pages on both sides, placed against the slot's start or its
 * end, so a read or write outside it faults. Each call runs twice with different thread counts
 * and different output fill bytes, and the harness checks the header's promise:
 *   - a status is returned (a trap or a crash is a finding; so is a call that the harness built
 *     to be refused, e.g. a huge count with a zero output stride, returning TRM_OK);
 *   - inputs are never written; on error every output slot is untouched;
 *   - on success nothing is written outside the outputs' elements, and the outputs are
 *     bit-identical across the two thread counts (which also shows that every element was
 *     written: the fill bytes of the two runs differ).
 * Aliasing: an input that draws an output to alias is decoded twice; the second time that output
 * lies over (part of) an earlier array, and the call must be refused (TRM_E_ALIASING when the first
 * call succeeded), except the overlaps the header allows (trm_partials_merge in place,
 * trm_weights_divide's weights), whose results are checked.
 * Every view the harness passes is backed by real memory of the extent it describes, except views
 * whose extent overflows int64 (the library must refuse them); calls whose accepted work could be
 * huge (broadcast views of 10^13 rows) are made only when the harness arranged a refusal.
 *
 * Groups (TRM_FUZZ_GROUP): mask (trm_mask, trm_token_keep, trm_token_values,
 * trm_importance_weights), partials (compute, merge, decide), logits (trm_exact_kl,
 * trm_topk_kl_lower_bound), bounds (trm_bounds_compute and the status/version functions),
 * correction (trm_rollout_correction, trm_weights_divide, trm_group_advantages, trm_correction_reduce), all. */
#define _DEFAULT_SOURCE
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "trmask.h"

/* ---- input decoding ------------------------------------------------------------------------ */

typedef struct {
    const uint8_t *p;
    size_t n;
} input_t;

static uint8_t u8(input_t *in) {
    if (in->n == 0) return 0;
    in->n--;
    return *in->p++;
}

static uint32_t u32(input_t *in) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v = v << 8 | u8(in);
    return v;
}

#define PICK(in, table) ((table)[u8(in) % (sizeof(table) / sizeof((table)[0]))])

/* Sizes: mostly small, sometimes negative, huge or overflowing. */
static int64_t size_value(input_t *in) {
    static const int64_t small[] = {0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 24, 31, 33, 64, 65};
    static const int64_t special[] = {-1, INT64_MIN, INT64_C(1) << 31, INT64_C(1) << 32, 1000000000000,
                                      10000000000000, INT64_MAX, INT64_C(1) << 62, INT64_C(1) << 40};
    uint8_t b = u8(in);
    if (b < 232) return small[b % (sizeof small / sizeof small[0])];
    return special[b % (sizeof special / sizeof special[0])];
}

static int is_huge(int64_t n) { return n < 0 || n > 4096; }

static double double_value(input_t *in) {
    static const double table[] = {-INFINITY, INFINITY, 0, 0.1, 1, 2, 0.002, 20, -1, 1e-300, 1e300, 0.5, 100};
    uint8_t b = u8(in);
    if (b == 255) return NAN;
    if (b >= 240) return -0.0;
    return table[b % (sizeof table / sizeof table[0])];
}

static int32_t dtype_value(input_t *in, const int32_t *usual, int n_usual) {
    uint8_t b = u8(in);
    if (b < 220) return usual[b % n_usual];
    static const int32_t any[] = {TRM_DTYPE_NONE, 1, 2, 3, 4, 5, 6, 7, 8, 9, 14, -1, 1000};
    return any[b % (sizeof any / sizeof any[0])];
}

static int dtype_size(int32_t dtype) {
    switch (dtype) {
    case TRM_DTYPE_F64: case TRM_DTYPE_I64: return 8;
    case TRM_DTYPE_F32: case TRM_DTYPE_I32: return 4;
    case TRM_DTYPE_F16: case TRM_DTYPE_BF16: return 2;
    default: return 1;
    }
}

static uint64_t rng_state;
static uint64_t rng(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* ---- guarded memory -------------------------------------------------------------------------- */

#define SLOT_BYTES (1 << 16)
#define N_SLOTS 48

typedef struct {
    uint8_t *start; /* SLOT_BYTES usable bytes, a PROT_NONE page before and after */
    int used;
    int output;      /* written by the call */
    int sentinel;    /* output slots are filled with a per-run byte */
    uint8_t *initial; /* content before the call (inputs; in-place outputs) */
    uint8_t *expected; /* content the slot must hold after a refused call */
    uint8_t *written; /* output slots: 1 where an element of the output lies */
    int written_lo, written_hi; /* the byte range holding elements */
} slot_t;

static slot_t slots[N_SLOTS];
static int n_used;
static long page_size;

static void setup_slots(void) {
    page_size = sysconf(_SC_PAGESIZE);
    for (int i = 0; i < N_SLOTS; i++) {
        uint8_t *base = mmap(NULL, SLOT_BYTES + 2 * (size_t)page_size, PROT_READ | PROT_WRITE,
                             MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (base == MAP_FAILED) abort();
        mprotect(base, (size_t)page_size, PROT_NONE);
        mprotect(base + page_size + SLOT_BYTES, (size_t)page_size, PROT_NONE);
        slots[i].start = base + page_size;
        slots[i].initial = malloc(SLOT_BYTES);
        slots[i].expected = malloc(SLOT_BYTES);
        slots[i].written = malloc(SLOT_BYTES);
    }
}

static slot_t *new_slot(int output) {
    if (n_used == N_SLOTS) return NULL;
    slot_t *s = &slots[n_used++];
    s->used = 1;
    s->output = output;
    s->sentinel = output;
    memset(s->written, 0, SLOT_BYTES);
    s->written_lo = SLOT_BYTES;
    s->written_hi = 0;
    memset(s->start, 0, SLOT_BYTES); /* reproducible content around the elements */
    return s;
}

/* An array of up to three dimensions: counts, strides in elements, element size. */
typedef struct {
    int64_t count[3];
    int64_t stride[3];
    int esize;
    uint8_t *base; /* element [0,0,0] */
    slot_t *slot;
    int elements;   /* has elements */
    int overflow;   /* extent overflows int64: the library must refuse it */
    int extent;     /* 1 + its index in extents[]; 0 = not recorded */
} arr_t;

/* ---- aliasing -------------------------------------------------------------------------------- */

/* Every input is decoded twice when it draws an output to alias: pass 0 places every array in its
   own slot; pass 1 reads the same bytes and random numbers, but moves the drawn outputs over (part
   of) an earlier array. Pass 1's call must be refused, with TRM_E_ALIASING when pass 0's call
   succeeded (the overlap is then the only difference). */
typedef struct {
    uint8_t *lo, *hi; /* the array's byte extent */
    uint8_t *base;
    slot_t *slot;
} extent_t;

static extent_t extents[N_SLOTS]; /* the arrays placed so far, in placement order (same in both passes) */
static int n_extents;
static int alias_pass;
static int alias_drawn;       /* pass 0 drew an output to alias: pass 1 runs */
static int alias_same_base;   /* 0: never at its target's base (trm_partials_merge: out may be a itself) */
static int unaliased_status;  /* pass 0's status; -1 = no call */

static void record_extent(arr_t *a, int64_t lo, int64_t hi) {
    if (n_extents == N_SLOTS) return;
    extents[n_extents] = (extent_t){a->base + lo, a->base + hi, a->base, a->slot};
    a->extent = ++n_extents;
}

/* Draws whether output `a` (just placed) aliases an earlier array; in pass 1 moves it there.
   Returns 1 when it moved (the call must be refused: its elements are not outputs). */
static int alias_output(arr_t *a) {
    uint64_t draw = rng(), r = rng();
    if ((draw & 7) != 0 || a->extent < 2) return 0;
    alias_drawn = 1;
    if (!alias_pass) return 0;
    extent_t *self = &extents[a->extent - 1];
    const extent_t *t = &extents[r % (uint64_t)(a->extent - 1)];
    int64_t len = self->hi - self->lo, target_len = t->hi - t->lo;
    int64_t at; /* the target's byte, from its slot's start, that the output will cover */
    switch ((r >> 32) & 3) {
    case 0: at = t->lo - t->slot->start; break; /* the output starts where the target starts */
    case 1: at = t->hi - 1 - t->slot->start; break;
    default: at = t->lo - t->slot->start + (int64_t)((r >> 34) % (uint64_t)target_len); break;
    }
    int64_t first = at - len + 1 < 0 ? 0 : at - len + 1, last = at < SLOT_BYTES - len ? at : SLOT_BYTES - len;
    first = (first + a->esize - 1) / a->esize * a->esize; /* element-aligned, as the library's callers */
    if (first > last) return 0;
    int64_t start = ((r >> 32) & 3) == 0 && at % a->esize == 0 && at <= last
                        ? at : first + (int64_t)((r >> 40) % (uint64_t)((last - first) / a->esize + 1)) * a->esize;
    uint8_t *base = t->slot->start + start + (a->base - self->lo);
    if (!alias_same_base && base == t->base) return 0;
    self->lo = t->slot->start + start;
    self->hi = self->lo + len;
    self->base = base;
    self->slot = t->slot;
    a->base = base;
    a->slot = t->slot;
    return 1;
}

static int64_t checked_mul(int64_t a, int64_t b, int *overflow) {
    int64_t r;
    if (__builtin_mul_overflow(a, b, &r)) *overflow = 1;
    return r;
}

/* Places `a` in a new slot. Returns 0 when it cannot be backed by memory (the call is skipped). */
static int place(input_t *in, arr_t *a, int output) {
    a->base = NULL;
    a->slot = NULL;
    a->overflow = 0;
    a->extent = 0;
    a->elements = a->count[0] != 0 && a->count[1] != 0 && a->count[2] != 0;
    uint8_t how = u8(in);
    if (!a->elements) {
        /* No elements: NULL, or some pointer (never dereferenced). */
        if (how & 1) {
            slot_t *s = new_slot(output);
            if (!s) return 0;
            a->slot = s;
            a->base = s->start + SLOT_BYTES;
        }
        return 1;
    }
    if (a->count[0] < 0 || a->count[1] < 0 || a->count[2] < 0) {
        a->overflow = 1; /* bad size: refused before any address is formed */
    }
    int64_t lo = 0, hi = 0;
    int overflow = 0;
    for (int d = 0; d < 3 && !a->overflow; d++) {
        int64_t span = checked_mul(checked_mul(a->count[d] - 1, a->stride[d], &overflow), a->esize, &overflow);
        if (overflow) break;
        if (span < 0 ? __builtin_add_overflow(lo, span, &lo) : __builtin_add_overflow(hi, span, &hi)) overflow = 1;
    }
    int64_t length;
    if (overflow || __builtin_add_overflow(hi, a->esize, &hi) || __builtin_sub_overflow(hi, lo, &length)) a->overflow = 1;
    slot_t *s = new_slot(output);
    if (!s) return 0;
    a->slot = s;
    if (a->overflow) {
        a->base = (how & 2) ? NULL : s->start;
        return 1;
    }
    if (hi - lo > SLOT_BYTES) return 0;
    if (how & 2) a->base = NULL; /* NULL data with elements: TRM_E_NULL_POINTER */
    else a->base = (how & 4) ? s->start + SLOT_BYTES - hi : s->start - lo;
    if (a->base) record_extent(a, lo, hi);
    return 1;
}

/* Calls `f` with the address of every distinct element (a zero stride visits its dimension once). */
static void each_element(const arr_t *a, void (*f)(uint8_t *, int64_t, void *), void *ctx) {
    if (!a->elements || a->overflow || !a->base) return;
    int64_t n[3];
    for (int d = 0; d < 3; d++) n[d] = a->stride[d] == 0 ? 1 : a->count[d];
    int64_t index = 0;
    for (int64_t i = 0; i < n[0]; i++)
        for (int64_t j = 0; j < n[1]; j++)
            for (int64_t k = 0; k < n[2]; k++)
                f(a->base + (i * a->stride[0] + j * a->stride[1] + k * a->stride[2]) * a->esize, index++, ctx);
}

static void mark_written(uint8_t *p, int64_t index, void *ctx) {
    (void)index;
    const arr_t *a = ctx;
    int at = (int)(p - a->slot->start);
    for (int b = 0; b < a->esize; b++) a->slot->written[at + b] = 1;
    if (at < a->slot->written_lo) a->slot->written_lo = at;
    if (at + a->esize > a->slot->written_hi) a->slot->written_hi = at + a->esize;
}

/* Declares `a` an output: its elements may be written on success. */
static void output_elements(arr_t *a) {
    if (a->slot && a->base && !a->overflow) each_element(a, mark_written, a);
}

/* ---- element values ------------------------------------------------------------------------ */

static uint16_t float_to_half(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000, exponent = (x >> 23) & 0xff, mantissa = x & 0x7fffff;
    if (exponent == 0xff) return (uint16_t)(sign | 0x7c00 | (mantissa ? 0x200 : 0));
    int e = (int)exponent - 127 + 15;
    if (e >= 31) return (uint16_t)(sign | 0x7c00);
    if (e <= 0) return (uint16_t)sign;
    return (uint16_t)(sign | (uint32_t)e << 10 | mantissa >> 13);
}

static void store_float(uint8_t *p, int32_t dtype, double v) {
    float f = (float)v;
    uint32_t bits;
    switch (dtype) {
    case TRM_DTYPE_F32: memcpy(p, &f, 4); break;
    case TRM_DTYPE_F64: memcpy(p, &v, 8); break;
    case TRM_DTYPE_F16: { uint16_t h = float_to_half(f); memcpy(p, &h, 2); break; }
    case TRM_DTYPE_BF16: { memcpy(&bits, &f, 4); uint16_t h = (uint16_t)(bits >> 16); memcpy(p, &h, 2); break; }
    case TRM_DTYPE_I32: { int32_t i = (int32_t)(v > 1e9 ? 1e9 : v < -1e9 ? -1e9 : v); memcpy(p, &i, 4); break; }
    case TRM_DTYPE_I64: { int64_t i = (int64_t)(v > 1e18 ? 1e18 : v < -1e18 ? -1e18 : v); memcpy(p, &i, 8); break; }
    default: *p = (uint8_t)(v != 0); break;
    }
}

typedef struct {
    int32_t dtype;
    int style;
    double scale;
} value_style_t;

static double random_value(int style, double scale) {
    uint64_t r = rng();
    double u = (double)(r >> 11) * 0x1p-53;
    switch (style % 4) {
    case 0: return (u * 2 - 1) * scale;
    case 1: return (r & 0xff) == 0 ? NAN : (r & 0xff) == 1 ? INFINITY : (r & 0xff) == 2 ? -INFINITY : (u * 2 - 1) * scale;
    case 2: return (r & 3) == 0 ? 0 : (u * 2 - 1) * scale * 100;
    default: { double d; memcpy(&d, &r, 8); return d; }
    }
}

static void fill_float(uint8_t *p, int64_t index, void *ctx) {
    (void)index;
    value_style_t *s = ctx;
    store_float(p, s->dtype, random_value(s->style, s->scale));
}

/* Integers: mostly in [0, limit], sometimes outside. */
typedef struct {
    int32_t dtype;
    int64_t limit;
    int sorted;      /* offsets: non-decreasing */
    int64_t last;
    int wild;
} index_style_t;

static void fill_index(uint8_t *p, int64_t index, void *ctx) {
    (void)index;
    index_style_t *s = ctx;
    if (s->limit > (INT64_C(1) << 40)) s->limit = INT64_C(1) << 40;
    if (s->limit < 0) s->limit = 0;
    int64_t v;
    uint64_t r = rng();
    if (s->wild && (r & 31) == 0) v = (r & 32) ? -1 : s->limit + 1;
    else if (s->sorted) v = s->last + (s->limit > s->last ? (int64_t)(r % (uint64_t)(s->limit - s->last + 1)) / 2 : 0);
    else v = s->limit > 0 ? (int64_t)(r % (uint64_t)(s->limit + 1)) : 0;
    if (s->sorted) s->last = v;
    store_float(p, s->dtype, (double)v);
}

/* ---- strides --------------------------------------------------------------------------------- */

/* Strides of a [rows, cols] view: row-major, column-major, reversed, broadcast, every other, wild. */
static void grid_strides(input_t *in, int64_t rows, int64_t cols, int packed, int64_t *row_stride, int64_t *col_stride) {
    static const int64_t wild[] = {0, 1, -1, 2, -2, 3, 7, -5, INT64_MAX, INT64_MIN, INT64_C(1) << 40};
    uint8_t style = u8(in);
    int64_t r = rows < 1 ? 1 : rows, c = cols < 1 ? 1 : cols;
    switch (style % 8) {
    case 0: case 1: *col_stride = 1; *row_stride = c; break;
    case 2: *col_stride = r; *row_stride = 1; break;          /* column-major */
    case 3: *col_stride = -1; *row_stride = c; break;
    case 4: *col_stride = 2; *row_stride = 2 * c + 1; break;  /* every other column */
    case 5: *col_stride = -2; *row_stride = -2 * c; break;
    case 6: *col_stride = 1; *row_stride = 0; break;          /* broadcast rows */
    default: *col_stride = PICK(in, wild); *row_stride = PICK(in, wild); break;
    }
    if (packed) *row_stride = (style & 0x80) && (style & 0x40) ? 1 : 0;
    if (is_huge(rows) && *row_stride != 0 && !(style & 0x20)) *row_stride = 0;
    if (is_huge(cols) && *col_stride != 0 && !(style & 0x20)) *col_stride = 0;
}

/* ---- one call, run twice --------------------------------------------------------------------- */

typedef struct {
    int refusal_arranged; /* the harness built an argument that must be refused */
    int64_t work;         /* upper bound of the positions an accepted call would visit; -1 = huge */
    int aliased;          /* pass 1 moved an output over another array */
} plan_t;

static void plan_work(plan_t *plan, int64_t a, int64_t b, int64_t c) {
    int overflow = 0;
    if (a < 0 || b < 0 || c < 0) { plan->refusal_arranged = 1; return; }
    int64_t w = checked_mul(checked_mul(a, b, &overflow), c, &overflow);
    if (overflow) { plan->refusal_arranged = 1; return; }
    if (plan->work >= 0 && w > plan->work) plan->work = w;
}

/* An output [count0, count1] with a zero stride on a dimension of more than one element: refused. */
static void plan_output(plan_t *plan, const arr_t *a) {
    if (!a->base) return;
    for (int d = 0; d < 3; d++)
        if (a->count[d] > 1 && a->stride[d] == 0 && a->count[0] != 0 && a->count[1] != 0 && a->count[2] != 0)
            plan->refusal_arranged = 1;
}

static void plan_input(plan_t *plan, const arr_t *a) {
    if (a->elements && !a->base) plan->refusal_arranged = 1;
    if (a->overflow) plan->refusal_arranged = 1;
}

static void snapshot(uint8_t run_sentinel) {
    for (int i = 0; i < n_used; i++) {
        slot_t *s = &slots[i];
        if (s->sentinel) memset(s->expected, run_sentinel, SLOT_BYTES);
        else memcpy(s->expected, s->initial, SLOT_BYTES);
        memcpy(s->start, s->expected, SLOT_BYTES);
    }
}

static void save_initial(void) {
    for (int i = 0; i < n_used; i++)
        if (!slots[i].sentinel) memcpy(slots[i].initial, slots[i].start, SLOT_BYTES);
}

static uint8_t *results[N_SLOTS];

/* Calls made, by status (printed at exit when TRM_FUZZ_STATS is set: how often calls succeed). */
static long status_counts[64], aliased_counts[64];

static void print_status_counts(void) {
    for (int i = 0; i < 64; i++)
        if (status_counts[i]) fprintf(stderr, "%-26s %ld\n", trm_status_name(i), status_counts[i]);
    for (int i = 0; i < 64; i++)
        if (aliased_counts[i]) fprintf(stderr, "aliased: %-26s %ld\n", trm_status_name(i), aliased_counts[i]);
}

static void finding(const char *what, int slot, trm_status_t s1, trm_status_t s2) {
    fprintf(stderr, "trmask fuzz finding: %s (slot %d, status %d/%d: %s)\n", what, slot, s1, s2, trm_status_name(s1));
    abort();
}

/* Makes the call of run 0 or 1 (the runs differ in the thread count of their options). */
typedef trm_status_t (*call_fn)(void *ctx, int32_t run);

/* Runs `call` twice and checks the promise. */
static void run_twice(call_fn call, void *ctx, const plan_t *plan) {
    if (plan->work < 0 || (plan->work > (1 << 20) && !plan->refusal_arranged)) return;
    save_initial();
    trm_status_t status[2];
    const uint8_t sentinel[2] = {0xa5, 0x5a};
    for (int run = 0; run < 2; run++) {
        snapshot(sentinel[run]);
        status[run] = call(ctx, run);
        for (int i = 0; i < n_used; i++) {
            slot_t *s = &slots[i];
            if (run == 0 && s->output) memcpy(results[i], s->start, SLOT_BYTES);
            if (memcmp(s->start, s->expected, SLOT_BYTES) == 0) continue;
            for (int b = 0; b < SLOT_BYTES; b++) {
                if (s->start[b] == s->expected[b]) continue;
                if (!s->output) finding("an input was written", i, status[run], 0);
                if (status[run] != TRM_OK) finding("an output was written on error", i, status[run], 0);
                if (!s->written[b]) finding("a byte outside the outputs was written", i, status[run], 0);
            }
        }
    }
    if (status[0] >= 0 && status[0] < 64) (plan->aliased ? aliased_counts : status_counts)[status[0]]++;
    if (status[0] != status[1]) finding("status depends on the thread count", -1, status[0], status[1]);
    if (!alias_pass) unaliased_status = status[0];
    if (plan->aliased && status[0] == TRM_OK) finding("an output over another array was accepted", -1, 0, 0);
    if (plan->aliased && unaliased_status == TRM_OK && status[0] != TRM_E_ALIASING)
        finding("an output over another array refused without TRM_E_ALIASING", -1, status[0], 0);
    if (status[0] == TRM_OK && plan->refusal_arranged) finding("an argument that must be refused was accepted", -1, 0, 0);
    if (status[0] != TRM_OK) return;
    for (int i = 0; i < n_used; i++) {
        slot_t *s = &slots[i];
        if (!s->output) continue;
        for (int b = s->written_lo; b < s->written_hi; b++)
            if (s->written[b] && s->start[b] != results[i][b])
                finding("outputs differ across thread counts (or an element was not written)", i, 0, 0);
    }
}

/* A struct of `size` bytes at the end of a guarded slot (an over-read faults). */
static void *struct_slot(size_t size, int output) {
    slot_t *s = new_slot(output);
    if (!s) return NULL;
    return s->start + SLOT_BYTES - size;
}

static uint32_t struct_size(input_t *in, size_t size) {
    uint8_t b = u8(in);
    if (b < 240) return (uint32_t)size;
    static const int64_t delta[] = {-1, -8, 8, 0x7fffffff, -(INT64_C(1) << 40)};
    int64_t d = delta[b % 5];
    return (uint32_t)((int64_t)size + d);
}

/* The thread counts of the two runs: different valid counts, or the same invalid one. */
static void threads_pair(input_t *in, int32_t threads[2]) {
    static const int32_t table[] = {0, 1, 2, 3, 4, 8};
    uint8_t b = u8(in);
    threads[0] = table[b % 6];
    threads[1] = table[(b / 6) % 6];
    if (b >= 250) threads[0] = threads[1] = b == 255 ? INT32_MIN : -1;
}

/* ---- building arguments ---------------------------------------------------------------------- */

static const int32_t float_dtypes[] = {TRM_DTYPE_F32, TRM_DTYPE_F32, TRM_DTYPE_F64, TRM_DTYPE_F16, TRM_DTYPE_BF16};
static const int32_t mask_dtypes[] = {TRM_DTYPE_U8, TRM_DTYPE_BOOL, TRM_DTYPE_U8, TRM_DTYPE_F32, TRM_DTYPE_I32,
                                      TRM_DTYPE_I64, TRM_DTYPE_F16, TRM_DTYPE_F64, TRM_DTYPE_BF16};
static const int32_t byte_dtypes[] = {TRM_DTYPE_U8, TRM_DTYPE_BOOL};
static const int32_t index_dtypes[] = {TRM_DTYPE_I32, TRM_DTYPE_I64};
static const int32_t logit_dtypes[] = {TRM_DTYPE_F32, TRM_DTYPE_BF16, TRM_DTYPE_F16};
static const int32_t logprob_dtypes[] = {TRM_DTYPE_F32, TRM_DTYPE_BF16, TRM_DTYPE_F16, TRM_DTYPE_F64};

#define N_OF(table) ((int)(sizeof(table) / sizeof((table)[0])))

static int skip; /* the arguments cannot be backed by memory: no call */

/* A 2-D (or packed 1-D) input over the token grid, placed and filled. */
static trm_view_t grid_input(input_t *in, plan_t *plan, int64_t rows, int64_t cols, int packed, const int32_t *dtypes,
                             int n_dtypes, int kind) {
    trm_view_t v;
    memset(&v, 0, sizeof v);
    v.dtype = dtype_value(in, dtypes, n_dtypes);
    if (u8(in) == 255) v.reserved = 1;
    grid_strides(in, rows, cols, packed, &v.stride_row, &v.stride_col);
    arr_t a = {{packed ? 1 : rows, cols, 1}, {v.stride_row, v.stride_col, 0}, dtype_size(v.dtype), 0, 0, 0, 0, 0};
    if (v.dtype == TRM_DTYPE_NONE) return v;
    if (!place(in, &a, 0)) { skip = 1; return v; }
    plan_input(plan, &a);
    v.data = a.base;
    if (kind == 0) {
        value_style_t style = {v.dtype, u8(in), (double)(1 + u8(in) % 8)};
        each_element(&a, fill_float, &style);
    } else {
        /* masks: mostly 0/1 */
        value_style_t style = {v.dtype, 2, 1};
        each_element(&a, fill_float, &style);
    }
    return v;
}

static arr_t last_index_array; /* the array index_input placed last */

/* A 1-D index input of `count` elements (lengths, offsets, keep_row). */
static trm_view_t index_input(input_t *in, plan_t *plan, int64_t count, const int32_t *dtypes, int n_dtypes, int64_t limit,
                              int sorted) {
    static const int64_t strides[] = {1, 1, 1, 0, -1, 2, -3, INT64_MAX};
    trm_view_t v;
    memset(&v, 0, sizeof v);
    memset(&last_index_array, 0, sizeof last_index_array);
    /* One dtype given: the element type is fixed (partials' int64 counts), never fuzzed. */
    v.dtype = n_dtypes == 1 ? dtypes[0] : dtype_value(in, dtypes, n_dtypes);
    v.stride_col = PICK(in, strides);
    if (u8(in) >= 250) v.stride_row = 1;
    if (is_huge(count) && v.stride_col != 0 && count != INT64_MAX) v.stride_col = 0;
    arr_t a = {{1, count, 1}, {0, v.stride_col, 0}, dtype_size(v.dtype), 0, 0, 0, 0, 0};
    if (v.dtype == TRM_DTYPE_NONE) return v;
    if (!place(in, &a, 0)) { skip = 1; return v; }
    plan_input(plan, &a);
    v.data = a.base;
    index_style_t style = {v.dtype, limit, sorted, 0, u8(in) < 32};
    each_element(&a, fill_index, &style);
    last_index_array = a;
    return v;
}

/* An output over [rows, cols] of `esize` bytes; `one_d` outputs use stride_row only. */
static trm_out_t output(input_t *in, plan_t *plan, int64_t rows, int64_t cols, int esize, int one_d, int wanted) {
    static const int64_t strides[] = {1, 1, 1, -1, 2, 0, 3, -2, INT64_MIN};
    trm_out_t o = {NULL, 0, 0};
    if (!wanted) return o;
    int64_t c = cols < 1 ? 1 : cols;
    uint8_t style = u8(in);
    switch (style % 6) {
    case 0: case 1: o.stride_row = one_d ? 1 : c; o.stride_col = one_d ? 0 : 1; break;
    case 2: o.stride_row = one_d ? -1 : 1; o.stride_col = one_d ? 0 : (rows < 1 ? 1 : rows); break;
    case 3: o.stride_row = one_d ? 2 : -c; o.stride_col = one_d ? 0 : 1; break;
    case 4: o.stride_row = PICK(in, strides); o.stride_col = one_d ? 0 : PICK(in, strides); break;
    default: o.stride_row = one_d ? 3 : 2 * c; o.stride_col = one_d ? (style & 0x80 ? 1 : 0) : 2; break;
    }
    if (is_huge(rows) && !(style & 0x40)) o.stride_row = 0;
    if (is_huge(cols) && !(style & 0x40)) o.stride_col = 0;
    arr_t a = {{rows, one_d ? 1 : cols, 1}, {o.stride_row, one_d ? 0 : o.stride_col, 0}, esize, 0, 0, 0, 0, 0};
    if (!place(in, &a, 1)) { skip = 1; return o; }
    if (a.overflow && a.base) plan->refusal_arranged = 1;
    plan_output(plan, &a);
    if (alias_output(&a)) plan->aliased = 1;
    else output_elements(&a);
    o.data = a.base;
    return o;
}

/* `rejected`: int64_t [n_criteria], contiguous, against the end of its slot. */
static int64_t *rejected_output(int64_t n_criteria) {
    int64_t n = n_criteria < 0 ? 0 : n_criteria > 65 ? 65 : n_criteria;
    int64_t *r = struct_slot((size_t)(n ? n : 1) * 8, 1);
    if (r && n) {
        arr_t a = {{n, 1, 1}, {1, 0, 0}, 8, (uint8_t *)r, &slots[n_used - 1], 1, 0, 0};
        output_elements(&a);
    }
    return r;
}

static trm_criterion_t *criteria_input(input_t *in, int64_t *n, int64_t *n_row) {
    static const int64_t counts[] = {0, 1, 1, 2, 2, 3, 4, 5, 64, 65, -1};
    *n = PICK(in, counts);
    *n_row = 0;
    int64_t stored = *n < 0 ? 0 : *n;
    trm_criterion_t *c = stored ? struct_slot((size_t)stored * sizeof *c, 0) : NULL;
    if (stored && !c) { skip = 1; return NULL; }
    if (!stored && u8(in) & 1) c = struct_slot(sizeof *c, 0);
    for (int64_t i = 0; i < stored; i++) {
        memset(&c[i], 0, sizeof c[i]);
        uint8_t b = u8(in);
        c[i].aggregation = b < 245 ? b % 7 : (int32_t)b;
        c[i].estimator = u8(in) % 9;
        c[i].lo = u8(in) < 160 ? -INFINITY : double_value(in);
        c[i].hi = double_value(in);
        if (c[i].aggregation == TRM_AGG_LN_TRM || u8(in) >= 250) {
            c[i].kl_max = double_value(in);
            c[i].eps = double_value(in);
        }
        if (c[i].aggregation != TRM_AGG_TOKEN) (*n_row)++;
    }
    return c;
}

/* The advantage rule of ABI 3, drawn from the random numbers (so the committed seeds' bytes keep
   their meaning): none in three calls of four, otherwise a valid rule, one field in eight broken. */
static void advantage_rule(trm_advantage_rule_t *a) {
    static const double limits[] = {0, 0.2, 1, 2, INFINITY, 0.5, 1e-300, 1e300};
    uint64_t r = rng();
    if (r & 3) return;
    a->statistic = (int32_t)((r >> 2) % 4);
    a->zero_advantage = (int32_t)((r >> 4) & 1);
    a->low = a->statistic == TRM_ADV_NONE ? 0 : limits[(r >> 8) % N_OF(limits)];
    a->high = limits[(r >> 12) % N_OF(limits)];
    a->sequence = (int32_t)((r >> 16) & 1);
    a->sequence_limit = a->sequence ? limits[(r >> 20) % N_OF(limits)] : 0;
    if ((r >> 40) & 7) return;
    switch ((r >> 43) % 7) {
    case 0: a->statistic = 4; break;
    case 1: a->zero_advantage = 2; break;
    case 2: a->low = -1; break;
    case 3: a->high = NAN; break;
    case 4: a->sequence = 2; break;
    case 5: a->reserved = 1; break;
    default: a->sequence = 1; a->sequence_limit = NAN; break;
    }
}

/* Options in two slots, one per run (they differ only in `threads`). */
static trm_options_t *options_pair(input_t *in, trm_options_t *pair[2], int32_t threads[2]) {
    static const double clamps[] = {INFINITY, INFINITY, 20, 0.5, 1e-30, 0, -1};
    trm_options_t o;
    memset(&o, 0, sizeof o);
    o.struct_size = struct_size(in, sizeof o);
    uint8_t b = u8(in);
    o.nan_policy = b < 250 ? b % 3 : b;
    o.clamp = u8(in) == 255 ? NAN : PICK(in, clamps);
    b = u8(in);
    o.reject_empty = b < 250 ? b % 2 : 2;
    threads_pair(in, threads);
    advantage_rule(&o.advantage);
    int absent = u8(in) == 255;
    for (int run = 0; run < 2; run++) {
        pair[run] = absent ? NULL : struct_slot(sizeof o, 0);
        if (!pair[run]) continue;
        *pair[run] = o;
        pair[run]->threads = threads[run];
    }
    return pair[0];
}

static trm_batch_t *batch_input(input_t *in, plan_t *plan) {
    trm_batch_t *b = u8(in) == 255 ? NULL : struct_slot(sizeof *b, 0);
    if (!b) { plan->refusal_arranged = 1; return NULL; }
    memset(b, 0, sizeof *b);
    b->struct_size = struct_size(in, sizeof *b);
    uint8_t layout = u8(in);
    b->layout = layout < 250 ? layout % 2 : layout;
    b->n_rows = size_value(in);
    b->n_cols = size_value(in);
    int packed = b->layout == TRM_LAYOUT_PACKED;
    int64_t rows = b->n_rows, cols = b->n_cols;
    plan_work(plan, rows, cols < 1 ? 1 : cols, 1);
    if (rows < 0 || cols < 0) plan->refusal_arranged = 1;
    uint8_t source = u8(in);
    switch (source % 5) {
    case 0: case 1:
        b->logp_train = grid_input(in, plan, rows, cols, packed, float_dtypes, N_OF(float_dtypes), 0);
        b->logp_roll = grid_input(in, plan, rows, cols, packed, float_dtypes, N_OF(float_dtypes), 0);
        break;
    case 2: b->log_ratio = grid_input(in, plan, rows, cols, packed, float_dtypes, N_OF(float_dtypes), 0); break;
    case 3: b->values = grid_input(in, plan, rows, cols, packed, float_dtypes, N_OF(float_dtypes), 0); break;
    default:
        b->log_ratio = grid_input(in, plan, rows, cols, packed, float_dtypes, N_OF(float_dtypes), 0);
        b->values = grid_input(in, plan, rows, cols, packed, float_dtypes, N_OF(float_dtypes), 0);
        break;
    }
    if (u8(in) & 1) b->mask = grid_input(in, plan, rows, cols, packed, mask_dtypes, N_OF(mask_dtypes), 1);
    if (u8(in) % 4 == 0) b->lengths = index_input(in, plan, rows, index_dtypes, N_OF(index_dtypes), packed ? 8 : cols, 0);
    if (packed || u8(in) == 255) {
        int64_t entries;
        if (__builtin_add_overflow(rows, 1, &entries)) { entries = rows; plan->refusal_arranged = 1; }
        if (u8(in) != 255) b->offsets = index_input(in, plan, entries, index_dtypes, N_OF(index_dtypes), cols, 1);
    }
    /* ABI 3 advantages, drawn from the random numbers: per token, per row, both or none */
    uint64_t r = rng();
    if ((r & 7) == 1 || (r & 7) == 3) b->advantages = grid_input(in, plan, rows, cols, packed, float_dtypes, N_OF(float_dtypes), 0);
    if ((r & 7) == 2 || (r & 7) == 3) b->row_advantages = grid_input(in, plan, 1, rows, 1, float_dtypes, N_OF(float_dtypes), 0);
    return b;
}

/* ---- the mask group: trm_mask, trm_token_keep, trm_token_values, trm_importance_weights ------ */

typedef struct {
    int entry;
    trm_batch_t *batch;
    trm_criterion_t *criteria;
    int64_t n_criteria;
    trm_options_t *options[2];
    trm_mask_out_t *out;
    int32_t estimator;
    trm_weight_rule_t rule;
    trm_view_t keep_row;
    trm_out_t grid_out;
} mask_call_t;

static trm_status_t call_mask_group(void *ctx, int32_t run) {
    mask_call_t *c = ctx;
    trm_options_t *o = c->options[run];
    switch (c->entry) {
    case 0: return trm_mask(c->batch, c->criteria, c->n_criteria, o, c->out);
    case 1: return trm_token_keep(c->batch, c->criteria, c->n_criteria, o, c->keep_row, c->grid_out);
    case 2: return trm_token_values(c->batch, c->estimator, o, c->grid_out);
    default: return trm_importance_weights(c->batch, o, c->rule, c->keep_row, c->grid_out);
    }
}

static trm_weight_rule_t weight_rule(input_t *in) {
    trm_weight_rule_t r;
    uint8_t b = u8(in);
    r.level = b < 250 ? b % 3 : b;
    b = u8(in);
    r.mode = b < 250 ? b % 3 : b;
    r.lo = u8(in) < 128 ? 0 : double_value(in);
    r.hi = double_value(in);
    return r;
}

static void fuzz_mask_group(input_t *in, uint8_t entry) {
    mask_call_t c;
    memset(&c, 0, sizeof c);
    plan_t plan = {0, 0, 0};
    c.entry = entry % 4;
    c.batch = batch_input(in, &plan);
    c.criteria = criteria_input(in, &c.n_criteria, &(int64_t){0});
    int64_t n_row = 0;
    for (int64_t i = 0; c.criteria && i < c.n_criteria; i++) n_row += c.criteria[i].aggregation != TRM_AGG_TOKEN;
    int32_t threads[2];
    options_pair(in, c.options, threads);
    if (!c.options[0] || !c.options[1]) plan.refusal_arranged = 1;
    int64_t rows = c.batch ? c.batch->n_rows : 0, cols = c.batch ? c.batch->n_cols : 0;
    int packed = c.batch && c.batch->layout == TRM_LAYOUT_PACKED;
    int64_t grid_rows = packed ? 1 : rows;
    if (c.entry == 0) {
        c.out = u8(in) == 255 ? NULL : struct_slot(sizeof *c.out, 0);
        if (c.out) {
            trm_mask_out_t m;
            memset(&m, 0, sizeof m);
            m.struct_size = struct_size(in, sizeof m);
            if (u8(in) == 255) m.reserved = 1;
            uint8_t want = u8(in);
            m.keep_row = output(in, &plan, rows, 1, 1, 1, want & 1);
            m.count = output(in, &plan, rows, 1, 8, 1, want & 2);
            m.nonfinite = output(in, &plan, rows, 1, 8, 1, want & 4);
            m.row_stats = output(in, &plan, rows, n_row, 4, 0, want & 8);
            m.keep_token = output(in, &plan, grid_rows, cols, 1, 0, want & 16);
            if (packed && m.keep_token.data && u8(in) != 255) m.keep_token.stride_row = 0;
            m.weights = output(in, &plan, grid_rows, cols, 4, 0, want & 32);
            if (packed && m.weights.data && u8(in) != 255) m.weights.stride_row = 0;
            m.weight_rule = weight_rule(in);
            if (want & 64) m.rejected = rejected_output(c.n_criteria);
            if (want & 128) {
                trm_metrics_t *metrics = struct_slot(sizeof *metrics, 1);
                if (metrics) {
                    slot_t *s = &slots[n_used - 1];
                    s->sentinel = 0;
                    memset(metrics, 0, sizeof *metrics);
                    metrics->struct_size = struct_size(in, sizeof *metrics);
                    if (u8(in) == 255) metrics->reserved = 1;
                    arr_t a = {{(int64_t)sizeof *metrics, 1, 1}, {1, 0, 0}, 1, (uint8_t *)metrics, s, 1, 0, 0};
                    output_elements(&a);
                    m.metrics = metrics;
                }
            }
            *c.out = m;
        } else {
            plan.refusal_arranged = 1;
        }
    } else {
        if (c.entry == 1 || (c.entry == 3 && (u8(in) & 1))) {
            c.keep_row = index_input(in, &plan, rows, byte_dtypes, N_OF(byte_dtypes), 1, 0);
        }
        c.estimator = u8(in) % 9;
        c.rule = weight_rule(in);
        c.grid_out = output(in, &plan, grid_rows, cols, c.entry == 1 ? 1 : 4, 0, u8(in) != 255);
        if (packed && c.grid_out.data && u8(in) != 255) c.grid_out.stride_row = 0;
    }
    if (skip) return;
    run_twice(call_mask_group, &c, &plan);
}

/* ---- the partials group: compute, merge, decide ----------------------------------------------- */

static arr_t partial_arrays[5]; /* the arrays of the partials partials_arg read last */

static trm_partials_t *partials_arg(input_t *in, plan_t *plan, int64_t rows, int as_output, int32_t *estimators_shared,
                                    int64_t n_est) {
    memset(partial_arrays, 0, sizeof partial_arrays);
    trm_partials_t *p = u8(in) == 255 ? NULL : struct_slot(sizeof *p, 0);
    if (!p) { plan->refusal_arranged = 1; return NULL; }
    memset(p, 0, sizeof *p);
    p->struct_size = struct_size(in, sizeof *p);
    if (u8(in) == 255) p->reserved = 1;
    p->n_rows = u8(in) >= 250 ? size_value(in) : rows;
    p->n_estimators = n_est;
    p->estimators = estimators_shared;
    int64_t r = p->n_rows;
    plan_work(plan, r < 0 ? 0 : r, 1, 1);
    if (r < 0) plan->refusal_arranged = 1;
    int64_t e = n_est < 0 ? 0 : n_est;
    if (as_output) {
        p->count = output(in, plan, r, 1, 8, 1, u8(in) != 255);
        p->nonfinite = output(in, plan, r, 1, 8, 1, u8(in) != 255);
        p->sum = output(in, plan, r, e, 8, 0, u8(in) != 255);
        p->max = output(in, plan, r, e, 4, 0, u8(in) != 255);
        p->min = output(in, plan, r, e, 4, 0, u8(in) != 255);
    } else {
        trm_view_t v = index_input(in, plan, r, index_dtypes + 1, 1, 50, 0);
        p->count = (trm_out_t){(void *)v.data, v.stride_col, v.stride_row};
        partial_arrays[0] = last_index_array;
        v = index_input(in, plan, r, index_dtypes + 1, 1, 5, 0);
        p->nonfinite = (trm_out_t){(void *)v.data, v.stride_col, v.stride_row};
        partial_arrays[1] = last_index_array;
        static const int32_t f64[] = {TRM_DTYPE_F64}, f32[] = {TRM_DTYPE_F32};
        for (int k = 0; k < 3; k++) {
            int64_t rs, cs;
            grid_strides(in, r, e, 0, &rs, &cs);
            const int32_t *dt = k == 0 ? f64 : f32;
            arr_t a = {{r, e, 1}, {rs, cs, 0}, k == 0 ? 8 : 4, 0, 0, 0, 0, 0};
            if (!place(in, &a, 0)) { skip = 1; return p; }
            plan_input(plan, &a);
            value_style_t style = {dt[0], u8(in), 4};
            each_element(&a, fill_float, &style);
            partial_arrays[2 + k] = a;
            trm_out_t o = {a.base, rs, cs};
            if (k == 0) p->sum = o;
            else if (k == 1) p->max = o;
            else p->min = o;
        }
    }
    return p;
}

typedef struct {
    int entry;
    trm_batch_t *batch;
    trm_options_t *options[2];
    trm_partials_t *a, *b, *out;
    trm_criterion_t *criteria;
    int64_t n_criteria;
    trm_mask_out_t *mask_out;
} partials_call_t;

static trm_status_t call_partials_group(void *ctx, int32_t run) {
    partials_call_t *c = ctx;
    switch (c->entry) {
    case 0: return trm_partials_compute(c->batch, c->options[run], c->out);
    case 1: return trm_partials_merge(c->a, c->b, c->out);
    default: return trm_partials_decide(c->a, c->criteria, c->n_criteria, c->options[run], c->mask_out);
    }
}

/* After a successful `trm_partials_merge(&a, &b, &a)`: the out-of-place call, into copies of a's
   arrays laid out as a's in fresh slots, must give the same bytes as the in-place call. */
static void check_merge_in_place(const partials_call_t *c, const arr_t a_arrays[5]) {
    trm_partials_t out = *c->a;
    trm_out_t *fields[5] = {&out.count, &out.nonfinite, &out.sum, &out.max, &out.min};
    slot_t *copies[5] = {NULL, NULL, NULL, NULL, NULL};
    for (int k = 0; k < 5; k++) {
        slot_t *a_slot = a_arrays[k].slot;
        if (!a_slot || !fields[k]->data) continue;
        copies[k] = new_slot(1);
        if (!copies[k]) return;
        memcpy(copies[k]->initial, a_slot->start, SLOT_BYTES); /* the in-place result */
        memcpy(a_slot->start, a_slot->initial, SLOT_BYTES);    /* a as it was before the call */
        memset(copies[k]->start, 0xa5, SLOT_BYTES);
        fields[k]->data = copies[k]->start + ((uint8_t *)fields[k]->data - a_slot->start);
    }
    if (trm_partials_merge(c->a, c->b, &out) != TRM_OK) finding("trm_partials_merge: refused out of place, accepted in place", -1, 0, 0);
    for (int k = 0; k < 5; k++) {
        if (!copies[k]) continue;
        for (int b = 0; b < SLOT_BYTES; b++)
            if (a_arrays[k].slot->written[b] && copies[k]->start[b] != copies[k]->initial[b])
                finding("trm_partials_merge: the in-place result differs from the out-of-place one", -1, 0, 0);
    }
}

static void fuzz_partials_group(input_t *in, uint8_t entry) {
    partials_call_t c;
    memset(&c, 0, sizeof c);
    plan_t plan = {0, 0, 0};
    c.entry = entry % 3;
    arr_t a_arrays[5];
    int in_place = 0;
    static const int64_t est_counts[] = {0, 1, 1, 2, 3, 8, 9, -1};
    int64_t n_est = PICK(in, est_counts);
    int64_t e = n_est < 0 ? 0 : n_est > 9 ? 9 : n_est;
    int32_t *estimators = e ? struct_slot((size_t)e * 4, 0) : (u8(in) & 1 ? struct_slot(4, 0) : NULL);
    uint8_t perm = u8(in);
    for (int64_t i = 0; i < e && estimators; i++) {
        uint8_t b = u8(in);
        estimators[i] = b < 250 ? (int32_t)((i + perm) % 13) : b; /* 8..12: the binary estimators */
    }
    if (e && !estimators) return;
    if (n_est > 0 && u8(in) == 255) { estimators = NULL; plan.refusal_arranged = 1; }
    int32_t threads[2];
    options_pair(in, c.options, threads);
    if (c.entry == 0) {
        if (!c.options[0] || !c.options[1]) plan.refusal_arranged = 1;
        c.batch = batch_input(in, &plan);
        c.out = partials_arg(in, &plan, c.batch ? c.batch->n_rows : 0, 1, estimators, n_est);
    } else if (c.entry == 1) {
        alias_same_base = 0;
        int64_t rows = size_value(in);
        c.a = partials_arg(in, &plan, rows, 0, estimators, n_est);
        memcpy(a_arrays, partial_arrays, sizeof a_arrays);
        c.b = partials_arg(in, &plan, rows, 0, estimators, n_est);
        if (c.a && !skip && u8(in) < 64) {
            /* in place, `trm_partials_merge(&a, &b, &a)`: a's arrays are read, then written */
            c.out = c.a;
            in_place = 1;
            for (int k = 0; k < 5; k++) {
                if (!a_arrays[k].slot) continue;
                a_arrays[k].slot->output = 1;
                output_elements(&a_arrays[k]);
            }
        } else {
            c.out = partials_arg(in, &plan, rows, 1, estimators, n_est);
        }
    } else {
        if (!c.options[0] || !c.options[1]) plan.refusal_arranged = 1;
        int64_t rows = size_value(in);
        c.a = partials_arg(in, &plan, rows, 0, estimators, n_est);
        int64_t n_row = 0;
        c.criteria = criteria_input(in, &c.n_criteria, &n_row);
        c.mask_out = u8(in) == 255 ? NULL : struct_slot(sizeof *c.mask_out, 0);
        if (!c.mask_out) plan.refusal_arranged = 1;
        else {
            trm_mask_out_t m;
            memset(&m, 0, sizeof m);
            m.struct_size = struct_size(in, sizeof m);
            uint8_t want = u8(in);
            int64_t r = c.a ? c.a->n_rows : 0;
            m.keep_row = output(in, &plan, r, 1, 1, 1, want & 1);
            m.count = output(in, &plan, r, 1, 8, 1, want & 2);
            m.nonfinite = output(in, &plan, r, 1, 8, 1, want & 4);
            m.row_stats = output(in, &plan, r, c.n_criteria < 0 ? 0 : c.n_criteria, 4, 0, want & 8);
            if (want & 16) m.rejected = rejected_output(c.n_criteria);
            if ((want & 96) == 96) m.keep_token = output(in, &plan, r, 1, 1, 1, 1);
            *c.mask_out = m;
        }
    }
    if (skip) return;
    run_twice(call_partials_group, &c, &plan);
    if (in_place && !alias_pass && unaliased_status == TRM_OK) check_merge_in_place(&c, a_arrays);
}

/* ---- the logits group: trm_exact_kl, trm_topk_kl_lower_bound ------------------------------- */

static trm_view3_t grid3_input(input_t *in, plan_t *plan, int64_t rows, int64_t cols, int64_t depth, const int32_t *dtypes,
                               int n_dtypes, int ids, int64_t vocab) {
    static const int64_t wild[] = {0, 1, -1, 2, INT64_MAX, INT64_MIN, 5};
    trm_view3_t v;
    memset(&v, 0, sizeof v);
    v.dtype = dtype_value(in, dtypes, n_dtypes);
    if (u8(in) == 255) v.reserved = 1;
    int64_t d = depth < 1 ? 1 : depth, c = cols < 1 ? 1 : cols, r = rows < 1 ? 1 : rows;
    uint8_t style = u8(in);
    switch (style % 6) {
    case 0: case 1: v.stride_depth = 1; v.stride_col = d; v.stride_row = c * d; break;
    case 2: v.stride_depth = -1; v.stride_col = d; v.stride_row = c * d; break;
    case 3: v.stride_depth = r * c; v.stride_col = 1; v.stride_row = c; break;
    case 4: v.stride_depth = 1; v.stride_col = 0; v.stride_row = 0; break;
    default: v.stride_depth = PICK(in, wild); v.stride_col = PICK(in, wild); v.stride_row = PICK(in, wild); break;
    }
    if (is_huge(rows) && !(style & 0x80)) v.stride_row = 0;
    if (is_huge(cols) && !(style & 0x80)) v.stride_col = 0;
    if (is_huge(depth) && !(style & 0x80)) v.stride_depth = 0;
    arr_t a = {{rows, cols, depth}, {v.stride_row, v.stride_col, v.stride_depth}, dtype_size(v.dtype), 0, 0, 0, 0, 0};
    if (!place(in, &a, 0)) { skip = 1; return v; }
    plan_input(plan, &a);
    v.data = a.base;
    if (ids) {
        index_style_t s = {v.dtype, vocab - 1, 0, 0, u8(in) < 16};
        each_element(&a, fill_index, &s);
    } else {
        value_style_t s = {v.dtype, u8(in), (double)(1 + u8(in) % 16)};
        each_element(&a, fill_float, &s);
    }
    return v;
}

static trm_view_t position_input(input_t *in, plan_t *plan, int64_t rows, int64_t cols, const int32_t *dtypes, int n,
                                 int64_t limit, int ids) {
    trm_view_t v;
    memset(&v, 0, sizeof v);
    v.dtype = dtype_value(in, dtypes, n);
    grid_strides(in, rows, cols, 0, &v.stride_row, &v.stride_col);
    arr_t a = {{rows, cols, 1}, {v.stride_row, v.stride_col, 0}, dtype_size(v.dtype), 0, 0, 0, 0, 0};
    if (v.dtype == TRM_DTYPE_NONE) return v;
    if (!place(in, &a, 0)) { skip = 1; return v; }
    plan_input(plan, &a);
    v.data = a.base;
    if (ids) {
        index_style_t s = {v.dtype, limit, 0, 0, u8(in) < 16};
        each_element(&a, fill_index, &s);
    } else {
        value_style_t s = {v.dtype, 2, 1};
        each_element(&a, fill_float, &s);
    }
    return v;
}

typedef struct {
    int entry;
    trm_logit_pair_t *pair;
    trm_topk_batch_t *topk;
    trm_logit_options_t *options[2];
    trm_exact_kl_out_t *out;
    trm_out_t kl_lb;
} logits_call_t;

static trm_status_t call_logits_group(void *ctx, int32_t run) {
    logits_call_t *c = ctx;
    if (c->entry == 0) return trm_exact_kl(c->pair, c->options[run], c->out);
    return trm_topk_kl_lower_bound(c->topk, c->options[run], c->kl_lb);
}

static void fuzz_logits_group(input_t *in, uint8_t entry) {
    logits_call_t c;
    memset(&c, 0, sizeof c);
    plan_t plan = {0, 0, 0};
    c.entry = entry % 2;
    static const int64_t vocabs[] = {1, 2, 3, 7, 8, 9, 16, 17, 33, 100, 0, -1};
    int64_t rows = size_value(in) % 9, cols = size_value(in) % 9;
    if (u8(in) >= 224) rows = size_value(in);
    if (u8(in) >= 224) cols = size_value(in);
    int64_t vocab = u8(in) < 240 ? PICK(in, vocabs) : size_value(in);
    trm_logit_options_t o;
    memset(&o, 0, sizeof o);
    o.struct_size = struct_size(in, sizeof o);
    static const double temperatures[] = {1, 1, 0.7, 2, 0, -1, 1e-40, 1e39, INFINITY};
    o.temperature = u8(in) == 255 ? NAN : PICK(in, temperatures);
    int32_t threads[2];
    threads_pair(in, threads);
    for (int run = 0; run < 2; run++) {
        c.options[run] = struct_slot(sizeof o, 0);
        if (!c.options[run]) return;
        *c.options[run] = o;
        c.options[run]->threads = threads[run];
    }
    plan_work(&plan, rows, cols, vocab < 0 ? 0 : vocab);
    if (rows < 0 || cols < 0 || vocab < 0) plan.refusal_arranged = 1;
    int64_t v = vocab < 1 ? 1 : vocab;
    if (c.entry == 0) {
        c.pair = struct_slot(sizeof *c.pair, 0);
        if (!c.pair) return;
        trm_logit_pair_t p;
        memset(&p, 0, sizeof p);
        p.struct_size = struct_size(in, sizeof p);
        p.n_rows = rows;
        p.n_cols = cols;
        p.vocab = vocab;
        p.rollout = grid3_input(in, &plan, rows, cols, vocab, logit_dtypes, N_OF(logit_dtypes), 0, 0);
        p.train = grid3_input(in, &plan, rows, cols, vocab, logit_dtypes, N_OF(logit_dtypes), 0, 0);
        if (u8(in) & 1) p.mask = position_input(in, &plan, rows, cols, byte_dtypes, N_OF(byte_dtypes), 1, 0);
        if (u8(in) & 1) p.token_ids = position_input(in, &plan, rows, cols, index_dtypes, N_OF(index_dtypes), v - 1, 1);
        *c.pair = p;
        c.out = struct_slot(sizeof *c.out, 0);
        if (!c.out) return;
        trm_exact_kl_out_t e;
        memset(&e, 0, sizeof e);
        e.struct_size = struct_size(in, sizeof e);
        uint8_t want = u8(in);
        e.kl = output(in, &plan, rows, cols, 4, 0, want & 1);
        e.tv = output(in, &plan, rows, cols, 4, 0, want & 2);
        e.logp_roll_token = output(in, &plan, rows, cols, 4, 0, want & 4);
        e.logp_train_token = output(in, &plan, rows, cols, 4, 0, want & 8);
        *c.out = e;
    } else {
        static const int64_t ks[] = {0, 1, 2, 3, 5, 8, 9, 17};
        int64_t k = u8(in) < 240 ? PICK(in, ks) : size_value(in);
        plan_work(&plan, rows, cols, k < 0 ? 0 : k);
        if (k < 0) plan.refusal_arranged = 1;
        c.topk = struct_slot(sizeof *c.topk, 0);
        if (!c.topk) return;
        trm_topk_batch_t t;
        memset(&t, 0, sizeof t);
        t.struct_size = struct_size(in, sizeof t);
        t.n_rows = rows;
        t.n_cols = cols;
        t.vocab = vocab;
        t.k = k;
        t.rollout_logprobs = grid3_input(in, &plan, rows, cols, k, logprob_dtypes, N_OF(logprob_dtypes), 0, 0);
        t.rollout_ids = grid3_input(in, &plan, rows, cols, k, index_dtypes, N_OF(index_dtypes), 1, v);
        t.train = grid3_input(in, &plan, rows, cols, vocab, logit_dtypes, N_OF(logit_dtypes), 0, 0);
        if (u8(in) & 1) t.mask = position_input(in, &plan, rows, cols, byte_dtypes, N_OF(byte_dtypes), 1, 0);
        *c.topk = t;
        c.kl_lb = output(in, &plan, rows, cols, 4, 0, u8(in) != 255);
    }
    if (skip) return;
    run_twice(call_logits_group, &c, &plan);
}

/* ---- the bounds group: trm_bounds_compute, status and version functions ---------------------- */

typedef struct {
    trm_bound_inputs_t *inputs;
    trm_bounds_t *out;
} bounds_call_t;

static trm_status_t call_bounds(void *ctx, int32_t run) {
    (void)run;
    bounds_call_t *c = ctx;
    return trm_bounds_compute(c->inputs, c->out);
}

static void fuzz_bounds_group(input_t *in, uint8_t entry) {
    if (entry % 4 == 3) {
        int32_t code = (int32_t)(int8_t)u8(in);
        if (!trm_status_string(code) || !trm_status_name(code) || !trm_version()) finding("NULL text", -1, code, 0);
        if (trm_abi_version() != TRM_ABI_VERSION) finding("ABI version", -1, 0, 0);
        return;
    }
    plan_t plan = {0, 0, 0};
    bounds_call_t c;
    c.inputs = u8(in) == 255 ? NULL : struct_slot(sizeof *c.inputs, 0);
    trm_bound_inputs_t b;
    memset(&b, 0, sizeof b);
    b.struct_size = struct_size(in, sizeof b);
    if (u8(in) == 255) b.reserved = 1;
    b.T = u8(in) < 200 ? (int64_t)u8(in) : size_value(in);
    b.kl_max = double_value(in);
    b.kl_seq = double_value(in);
    b.eps = u8(in) < 128 ? NAN : double_value(in);
    b.tv_seq = u8(in) < 128 ? NAN : double_value(in);
    b.reward_range = double_value(in);
    uint8_t d = u8(in);
    if (d & 1) {
        int64_t count = d & 2 ? b.T : (int64_t)(d >> 2);
        if (d >= 250) count = size_value(in);
        arr_t a = {{1, count, 1}, {0, 1, 0}, 8, 0, 0, 0, 0, 0};
        if (count > 4096) a.stride[1] = 0; /* cannot back it: the call is refused or skipped below */
        if (!place(in, &a, 0)) return;
        b.dbar = (const double *)a.base;
        b.dbar_count = count;
        value_style_t style = {TRM_DTYPE_F64, u8(in), 1};
        each_element(&a, fill_float, &style);
        if (a.base && count > 4096) return; /* dbar is contiguous: a huge count cannot be backed */
    } else if (d & 2) {
        b.dbar_count = (int64_t)(d >> 2);
    }
    if (c.inputs) *c.inputs = b;
    c.out = u8(in) == 255 ? NULL : struct_slot(sizeof *c.out, 1);
    if (c.out) {
        slot_t *s = &slots[n_used - 1];
        s->sentinel = 0;
        memset(c.out, 0, sizeof *c.out);
        c.out->struct_size = struct_size(in, sizeof *c.out);
        arr_t a = {{(int64_t)sizeof *c.out, 1, 1}, {1, 0, 0}, 1, (uint8_t *)c.out, s, 1, 0, 0};
        output_elements(&a);
    }
    run_twice(call_bounds, &c, &plan);
}

/* ---- the correction group: trm_rollout_correction, trm_weights_divide, trm_group_advantages -- */

static const int32_t weight_dtypes[] = {TRM_DTYPE_F32, TRM_DTYPE_F64, TRM_DTYPE_F16, TRM_DTYPE_BF16};

static int32_t flag_value(input_t *in) {
    uint8_t b = u8(in);
    return b < 250 ? b % 2 : b;
}

/* A trm_typed_out_t over the token grid ([grid_rows, cols]; packed: stride_row 0). */
static trm_typed_out_t typed_output(input_t *in, plan_t *plan, int64_t grid_rows, int64_t cols, int packed, int32_t dtype,
                                    int wanted) {
    trm_typed_out_t t;
    memset(&t, 0, sizeof t);
    t.dtype = dtype;
    if (wanted && u8(in) == 255) t.reserved = 1;
    trm_out_t o = output(in, plan, grid_rows, cols, dtype_size(dtype), 0, wanted);
    t.data = o.data;
    t.stride_row = o.stride_row;
    t.stride_col = o.stride_col;
    if (packed && t.data && u8(in) != 255) t.stride_row = 0;
    return t;
}

/* A struct the call writes whole on success (statistics, counts): an output slot whose initial
   content (struct_size, the pointers it holds) is kept, with bytes [from, size) declared written. */
static void *written_struct(size_t size, size_t from) {
    uint8_t *p = struct_slot(size, 1);
    if (!p) return NULL;
    slot_t *s = &slots[n_used - 1];
    s->sentinel = 0;
    memset(p, 0, size);
    arr_t a = {{(int64_t)(size - from), 1, 1}, {1, 0, 0}, 1, p + from, s, 1, 0, 0};
    output_elements(&a);
    return p;
}

typedef struct {
    int entry;
    trm_batch_t *batch;
    trm_correction_config_t *config[2];
    trm_correction_out_t *out;
    trm_correction_rows_t *shards;
    int64_t n_shards;
    trm_correction_stats_t *stats;
    int32_t layout;
    int64_t n_rows, n_cols;
    trm_view_t offsets;
    double divisor;
    trm_typed_out_t weights;
    arr_t weights_array;
    trm_groups_t *groups;
    trm_group_out_t *group_out;
} correction_call_t;

static trm_status_t call_correction_group(void *ctx, int32_t run) {
    correction_call_t *c = ctx;
    switch (c->entry) {
    case 0: return trm_rollout_correction(c->batch, c->config[run], c->out);
    case 1: return trm_weights_divide(c->layout, c->n_rows, c->n_cols, c->offsets, c->divisor, c->weights);
    case 3: return trm_correction_reduce(c->config[run], c->shards, c->n_shards, c->stats);
    default: return trm_group_advantages(c->groups, c->group_out);
    }
}

/* A trm_correction_config_t (its rejections in a slot of their own); 0 when it cannot be placed. */
static int correction_config(input_t *in, trm_correction_config_t *config) {
    trm_correction_config_t k;
    memset(&k, 0, sizeof k);
    k.struct_size = struct_size(in, sizeof k);
    k.compute_dtype = dtype_value(in, weight_dtypes, N_OF(weight_dtypes));
    k.mean_dtype = dtype_value(in, weight_dtypes, N_OF(weight_dtypes));
    k.mask_weights = flag_value(in);
    static const double clamps[] = {20, 20, 1, 0.5, 1e-30, INFINITY, 0, -1};
    k.clamp = u8(in) == 255 ? NAN : PICK(in, clamps);
    static const int32_t n_rejections[] = {0, 1, 1, 2, 3, TRM_MAX_REJECTIONS, TRM_MAX_REJECTIONS + 1, -1};
    k.n_rejections = PICK(in, n_rejections);
    if (k.n_rejections > 0) {
        trm_rejection_t *r = struct_slot((size_t)k.n_rejections * sizeof *r, 0);
        if (!r) return 0;
        for (int32_t i = 0; i < k.n_rejections; i++) {
            uint8_t b = u8(in);
            r[i].level = b < 245 ? b % 4 : b;
            b = u8(in);
            r[i].estimator = b < 245 ? TRM_EST_K1 + b % 3 : b % 13;
            r[i].lo = u8(in) < 128 ? -INFINITY : double_value(in);
            r[i].hi = double_value(in);
        }
        k.rejections = u8(in) == 255 ? NULL : r;
    } else if (u8(in) & 1) {
        k.rejections = struct_slot(sizeof *k.rejections, 0);
    }
    k.weights = flag_value(in);
    k.normalize = flag_value(in);
    k.weight_rule = weight_rule(in);
    *config = k;
    return 1;
}

/* The row records of a call with `n_rejections` options: a contiguous [rows, width] double
   output, and the descriptor of the call's facts (sometimes not the call's). */
static trm_correction_rows_t rows_output(input_t *in, plan_t *plan, const trm_batch_t *batch, int64_t rows,
                                         int32_t n_rejections, const trm_typed_out_t *weights) {
    trm_correction_rows_t r;
    memset(&r, 0, sizeof r);
    int32_t n = n_rejections < 0 ? 0 : n_rejections > TRM_MAX_REJECTIONS ? TRM_MAX_REJECTIONS : n_rejections;
    arr_t a = {{rows, TRM_CORRECTION_ROW_WIDTH(n), 1}, {TRM_CORRECTION_ROW_WIDTH(n), 1, 0}, 8, 0, 0, 0, 0, 0};
    if (!place(in, &a, 1)) { skip = 1; return r; }
    if (a.overflow && a.base) plan->refusal_arranged = 1;
    if (alias_output(&a)) plan->aliased = 1;
    else output_elements(&a);
    r.data = (double *)a.base;
    r.n_rows = rows;
    r.mask_dtype = batch ? batch->mask.dtype : TRM_DTYPE_NONE;
    r.weights_dtype = weights->data ? weights->dtype : TRM_DTYPE_NONE;
    r.log_probs = batch && batch->logp_train.dtype != TRM_DTYPE_NONE;
    uint8_t b = u8(in);
    if (b == 255) r.reserved = 1;
    else if (b == 254) r.n_rows = rows + 1;
    else if (b == 253) r.mask_dtype = TRM_DTYPE_F64;
    else if (b == 252) r.log_probs = 2;
    return r;
}

static void fuzz_rollout_correction(input_t *in, correction_call_t *c, plan_t *plan) {
    c->batch = batch_input(in, plan);
    int64_t rows = c->batch ? c->batch->n_rows : 0, cols = c->batch ? c->batch->n_cols : 0;
    int packed = c->batch && c->batch->layout == TRM_LAYOUT_PACKED;
    trm_correction_config_t k;
    if (!correction_config(in, &k)) { skip = 1; return; }
    int32_t threads[2];
    threads_pair(in, threads);
    int absent = u8(in) == 255;
    for (int run = 0; run < 2 && !absent; run++) {
        c->config[run] = struct_slot(sizeof k, 0);
        if (!c->config[run]) { skip = 1; return; }
        *c->config[run] = k;
        c->config[run]->threads = threads[run];
    }
    c->out = u8(in) == 255 ? NULL : struct_slot(sizeof *c->out, 0);
    if (absent || !c->out) { plan->refusal_arranged = 1; return; }
    trm_correction_out_t o;
    memset(&o, 0, sizeof o);
    o.struct_size = struct_size(in, sizeof o);
    if (u8(in) == 255) o.reserved = 1;
    uint8_t want = u8(in);
    int32_t mask_dtype = c->batch && c->batch->mask.dtype != TRM_DTYPE_NONE && u8(in) < 224
                             ? c->batch->mask.dtype : dtype_value(in, mask_dtypes, N_OF(mask_dtypes));
    int64_t grid_rows = packed ? 1 : rows;
    o.mask = typed_output(in, plan, grid_rows, cols, packed, mask_dtype, want & 1);
    o.keep_row = output(in, plan, rows, 1, 1, 1, want & 2);
    o.weights = typed_output(in, plan, grid_rows, cols, packed, dtype_value(in, weight_dtypes, N_OF(weight_dtypes)), want & 4);
    if (want & 8) {
        o.stats = written_struct(sizeof *o.stats, 0);
        if (o.stats) {
            o.stats->struct_size = struct_size(in, sizeof *o.stats);
            if (u8(in) == 255) o.stats->reserved = 1;
        }
    }
    if ((want & 16) && !is_huge(rows)) o.rows = rows_output(in, plan, c->batch, rows, k.n_rejections, &o.weights);
    *c->out = o;
}

/* Row records as a call writes them: counts small integers, flags 0/1, the rest any double; one
   field in 64 out of its domain. */
static void fill_record(uint8_t *p, int64_t index, void *ctx) {
    int64_t width = *(const int64_t *)ctx, field = index % width;
    uint64_t r = rng();
    double v = random_value((int)(r >> 60), 4);
    if (field == 1) v = (double)(r % 9);                                     /* valid count */
    else if (field == 8 || (field >= TRM_CORRECTION_ROW_FIELDS && (field - TRM_CORRECTION_ROW_FIELDS) % 10 == 9))
        v = (double)(r & 1);                                                 /* any_rejected flags */
    if ((r & 63) == 0) v = (r & 64) ? 0.5 : NAN;
    memcpy(p, &v, 8);
}

/* trm_correction_reduce: shards of row records (inputs), the statistics (written on success). */
static void fuzz_correction_reduce(input_t *in, correction_call_t *c, plan_t *plan) {
    trm_correction_config_t k;
    if (!correction_config(in, &k)) { skip = 1; return; }
    for (int run = 0; run < 2; run++) {
        c->config[run] = struct_slot(sizeof k, 0);
        if (!c->config[run]) { skip = 1; return; }
        *c->config[run] = k;
    }
    static const int64_t n_shards[] = {1, 1, 2, 2, 3, 4, 0, -1, TRM_MAX_CORRECTION_SHARDS + 1};
    c->n_shards = PICK(in, n_shards);
    if (c->n_shards < 0 || c->n_shards > TRM_MAX_CORRECTION_SHARDS) plan->refusal_arranged = 1;
    int64_t stored = c->n_shards < 1 ? 1 : c->n_shards > 4 ? 4 : c->n_shards;
    c->shards = struct_slot((size_t)stored * sizeof *c->shards, 0);
    if (!c->shards) { skip = 1; return; }
    int32_t n = k.n_rejections < 0 ? 0 : k.n_rejections > TRM_MAX_REJECTIONS ? TRM_MAX_REJECTIONS : k.n_rejections;
    int64_t width = TRM_CORRECTION_ROW_WIDTH(n);
    int32_t mask_dtype = dtype_value(in, mask_dtypes, N_OF(mask_dtypes)), weights_dtype = TRM_DTYPE_NONE;
    if (k.weights == 1 && u8(in) < 192) weights_dtype = dtype_value(in, weight_dtypes, N_OF(weight_dtypes));
    int32_t log_probs = u8(in) & 1;
    for (int64_t i = 0; i < stored; i++) {
        trm_correction_rows_t *r = &c->shards[i];
        memset(r, 0, sizeof *r);
        r->n_rows = size_value(in);
        r->mask_dtype = mask_dtype;
        r->weights_dtype = weights_dtype;
        r->log_probs = log_probs;
        uint8_t b = u8(in);
        if (b == 255) r->reserved = 1;
        else if (b == 254) r->log_probs = !log_probs;
        arr_t a = {{r->n_rows, width, 1}, {width, 1, 0}, 8, 0, 0, 0, 0, 0};
        if (!place(in, &a, 0)) { skip = 1; return; }
        if (i < c->n_shards) plan_input(plan, &a); /* shards past n_shards are never read */
        each_element(&a, fill_record, &width);
        r->data = (double *)a.base;
    }
    if (u8(in) == 255) c->shards = NULL;
    c->stats = written_struct(sizeof *c->stats, 0);
    if (!c->stats) { skip = 1; return; }
    c->stats->struct_size = struct_size(in, sizeof *c->stats);
    if (u8(in) == 255) c->stats->reserved = 1;
}

/* trm_weights_divide: the weights are read and written in place; the offsets are the one other array. */
static void fuzz_weights_divide(input_t *in, correction_call_t *c, plan_t *plan) {
    uint8_t b = u8(in);
    c->layout = b < 250 ? b % 2 : b;
    c->n_rows = size_value(in);
    c->n_cols = size_value(in);
    int packed = c->layout == TRM_LAYOUT_PACKED;
    plan_work(plan, c->n_rows, c->n_cols < 1 ? 1 : c->n_cols, 1);
    if (c->n_rows < 0 || c->n_cols < 0) plan->refusal_arranged = 1;
    if (packed || u8(in) == 255) {
        int64_t entries;
        if (__builtin_add_overflow(c->n_rows, 1, &entries)) { entries = c->n_rows; plan->refusal_arranged = 1; }
        if (u8(in) != 255) c->offsets = index_input(in, plan, entries, index_dtypes, N_OF(index_dtypes), c->n_cols, 1);
    }
    static const double divisors[] = {1, 2, 0.5, 3, 7, 1e-300, 1e300, 0, -1, INFINITY, -0.0};
    c->divisor = u8(in) == 255 ? NAN : PICK(in, divisors);
    trm_typed_out_t *w = &c->weights;
    w->dtype = dtype_value(in, weight_dtypes, N_OF(weight_dtypes));
    if (u8(in) == 255) w->reserved = 1;
    grid_strides(in, c->n_rows, c->n_cols, packed, &w->stride_row, &w->stride_col);
    arr_t a = {{packed ? 1 : c->n_rows, c->n_cols, 1}, {w->stride_row, w->stride_col, 0}, dtype_size(w->dtype), 0, 0, 0, 0, 0};
    if (!place(in, &a, 1)) { skip = 1; return; }
    plan_input(plan, &a);
    plan_output(plan, &a);
    w->data = a.base;
    if (alias_output(&a)) { /* over the offsets (the one other array): refused, nothing written */
        w->data = a.base;
        plan->aliased = 1;
        return;
    }
    if (a.slot) a.slot->sentinel = 0; /* read and written in place: both runs start from the same weights */
    value_style_t style = {w->dtype, u8(in), 8};
    each_element(&a, fill_float, &style);
    output_elements(&a);
    c->weights_array = a;
}

static int64_t load_index(const trm_view_t *v, int64_t i) {
    const uint8_t *p = (const uint8_t *)v->data + i * v->stride_col * dtype_size(v->dtype);
    if (v->dtype == TRM_DTYPE_I32) { int32_t x; memcpy(&x, p, 4); return x; }
    int64_t x;
    memcpy(&x, p, 8);
    return x;
}

typedef struct {
    const correction_call_t *call;
    int64_t first, end; /* the positions inside rows (packed) */
} divided_t;

/* One weight after a successful trm_weights_divide: the quotient in the weights' dtype inside a
   row (checked for F32 and F64, where C's division is the library's), the old value outside. */
static void check_divided(uint8_t *p, int64_t index, void *ctx) {
    divided_t *d = ctx;
    const trm_typed_out_t *w = &d->call->weights;
    const arr_t *a = &d->call->weights_array;
    int64_t at = p - a->slot->start;
    const uint8_t *before = a->slot->initial + at;
    int64_t position = d->call->layout == TRM_LAYOUT_PACKED ? index : 0;
    if (position < d->first || position >= d->end) {
        if (memcmp(p, before, (size_t)a->esize) != 0) finding("trm_weights_divide wrote outside the rows", -1, 0, 0);
        return;
    }
    if (w->dtype == TRM_DTYPE_F32) {
        float x, y, q = (float)d->call->divisor;
        memcpy(&x, before, 4);
        memcpy(&y, p, 4);
        x /= q;
        if (memcmp(&x, &y, 4) != 0) finding("trm_weights_divide: not the F32 quotient", -1, 0, 0);
    } else if (w->dtype == TRM_DTYPE_F64) {
        double x, y;
        memcpy(&x, before, 8);
        memcpy(&y, p, 8);
        x /= d->call->divisor;
        if (memcmp(&x, &y, 8) != 0) finding("trm_weights_divide: not the F64 quotient", -1, 0, 0);
    }
}

static void check_weights_divide(const correction_call_t *c) {
    divided_t d = {c, 0, 1}; /* padded: every position is inside a row */
    if (c->layout == TRM_LAYOUT_PACKED) {
        /* accepted: the offsets are valid, or absent with no rows */
        d.first = c->offsets.data ? load_index(&c->offsets, 0) : 0;
        d.end = c->offsets.data ? load_index(&c->offsets, c->n_rows) : 0;
    }
    /* each_element visits a packed grid's positions in order (index = position); a zero column
       stride is refused, so every visited element is one position */
    each_element(&c->weights_array, check_divided, &d);
}

static void fuzz_group_advantages(input_t *in, correction_call_t *c, plan_t *plan) {
    c->groups = u8(in) == 255 ? NULL : struct_slot(sizeof *c->groups, 0);
    trm_groups_t g;
    memset(&g, 0, sizeof g);
    g.struct_size = struct_size(in, sizeof g);
    if (u8(in) == 255) g.reserved = 1;
    g.n_rows = size_value(in);
    int64_t n = g.n_rows;
    plan_work(plan, n, 1, 1);
    if (n < 0) plan->refusal_arranged = 1;
    g.group = index_input(in, plan, n, index_dtypes, N_OF(index_dtypes), u8(in) % 8, 0);
    g.reward = grid_input(in, plan, 1, n, 1, float_dtypes, N_OF(float_dtypes), 0);
    if (u8(in) & 1) g.keep = grid_input(in, plan, 1, n, 1, mask_dtypes, N_OF(mask_dtypes), 1);
    g.no_std_normalization = flag_value(in);
    uint8_t b = u8(in);
    g.singleton = b < 250 ? b % 2 : b;
    g.eps_set = flag_value(in);
    if (u8(in) == 255) g.reserved2 = 1;
    g.eps = double_value(in);
    if (c->groups) *c->groups = g;
    else plan->refusal_arranged = 1;
    if (u8(in) == 255) { plan->refusal_arranged = 1; return; }
    trm_group_out_t *o = written_struct(sizeof *o, offsetof(trm_group_out_t, n_groups));
    if (!o) { skip = 1; return; }
    o->struct_size = struct_size(in, sizeof *o);
    if (u8(in) == 255) o->reserved = 1;
    uint8_t want = u8(in);
    o->advantages = output(in, plan, n, 1, 4, 1, want & 1);
    o->voters = output(in, plan, n, 1, 8, 1, want & 2);
    o->mean = output(in, plan, n, 1, 8, 1, want & 4);
    o->std = output(in, plan, n, 1, 8, 1, want & 8);
    c->group_out = o;
}

static void fuzz_correction_group(input_t *in, uint8_t entry) {
    correction_call_t c;
    memset(&c, 0, sizeof c);
    plan_t plan = {0, 0, 0};
    c.entry = entry % 4;
    if (c.entry == 0) fuzz_rollout_correction(in, &c, &plan);
    else if (c.entry == 1) fuzz_weights_divide(in, &c, &plan);
    else if (c.entry == 3) fuzz_correction_reduce(in, &c, &plan);
    else fuzz_group_advantages(in, &c, &plan);
    if (skip) return;
    run_twice(call_correction_group, &c, &plan);
    if (c.entry == 1 && unaliased_status == TRM_OK && !alias_pass && c.weights_array.elements) check_weights_divide(&c);
}

static int group = -1;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    setup_slots();
    for (int i = 0; i < N_SLOTS; i++) results[i] = malloc(SLOT_BYTES);
    if (getenv("TRM_FUZZ_STATS")) atexit(print_status_counts);
    const char *name = getenv("TRM_FUZZ_GROUP");
    if (name && strcmp(name, "mask") == 0) group = 0;
    else if (name && strcmp(name, "partials") == 0) group = 1;
    else if (name && strcmp(name, "logits") == 0) group = 2;
    else if (name && strcmp(name, "bounds") == 0) group = 3;
    else if (name && strcmp(name, "correction") == 0) group = 4;
    return 0;
}

static void fuzz_one(const uint8_t *data, size_t size) {
    input_t in = {data, size};
    n_used = 0;
    n_extents = 0;
    skip = 0;
    alias_same_base = 1;
    rng_state = 0x9e3779b97f4a7c15ull ^ ((uint64_t)u32(&in) << 1 | 1);
    uint8_t selector = u8(&in);
    int g = group >= 0 ? group : selector % 5;
    uint8_t entry = u8(&in);
    switch (g) {
    case 0: fuzz_mask_group(&in, entry); break;
    case 1: fuzz_partials_group(&in, entry); break;
    case 2: fuzz_logits_group(&in, entry); break;
    case 3: fuzz_bounds_group(&in, entry); break;
    default: fuzz_correction_group(&in, entry); break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    alias_pass = 0;
    alias_drawn = 0;
    unaliased_status = -1;
    fuzz_one(data, size);
    if (alias_drawn) {
        alias_pass = 1;
        fuzz_one(data, size);
    }
    return 0;
}

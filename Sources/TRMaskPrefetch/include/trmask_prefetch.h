/* Software prefetch for the kernels' streaming loops (Swift has none of its own). A prefetch is a
   hint: it never faults and never changes a result, even for an address past an array's end. */
#ifndef TRMASK_PREFETCH_H
#define TRMASK_PREFETCH_H

/* Asks for the cache line holding `address`, for reading, kept in every cache level. */
static inline void trm_prefetch(const void *address) { __builtin_prefetch(address, 0, 3); }

#endif

/* TRMaskPrefetch has only a static inline function (trmask_prefetch.h); a C target needs a source. */
#include "trmask_prefetch.h"

/* Compiled by SwiftPM as the CTRMask target's only source: proves trmask.h compiles as C on its
   own, with nothing included before it. */
#include "trmask.h"

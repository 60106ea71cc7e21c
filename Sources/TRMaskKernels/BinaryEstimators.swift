#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The binary (Bernoulli) estimators of SPEC §4.7: functions of the sampled token's
/// probabilities `p_t = exp(lt)`, `p_r = exp(lr)`, not of `delta`, so they are computed from the
/// two log-probabilities themselves, in float64, and rounded once to float32.
///
/// Accuracy (measured against a 50-digit reference in python/tests/test_rules2026.py):
/// `bdiff` within 1 float32 rounding of the float64 value (SPEC: 2e-7 absolute); `bkl*` within
/// a few float64 ulps relative before the float32 rounding (SPEC: 1e-5 relative + 1e-12): every
/// term below is evaluated without cancellation.

/// The clamp of SPEC §4.7 in log space: `ln a = min(max(l, ln eps), ln(1 - eps))`.
struct BinaryClamp {
    let logLow: Double
    let logHigh: Double

    init(eps: Double) {
        logLow = log(eps)  // -inf for eps = 0: no lower clamp
        logHigh = log1p(-eps)  // 0 for eps = 0
    }

    @inline(__always)
    func callAsFunction(_ l: Double) -> Double {
        l < logLow ? logLow : (l > logHigh ? logHigh : l)  // NaN passes through
    }
}

/// `a * (exp(u) - 1 - u)` for `a = exp(la) > 0` and `b = exp(la + u)`: the part of `KL_B` from
/// one outcome, without cancellation (a series for small `|u|`, `expm1` up to 1, and the
/// direct `(b - a) - a u` beyond, which cannot overflow where `exp(u)` would).
@inline(__always)
func weightedK3(a: Double, b: Double, u: Double) -> Double {
    let m = Swift.abs(u)
    if m < 1e-3 {
        // exp(u) - 1 - u = u^2 (1/2 + u/6 + u^2/24 + u^3/120); the next term is below 1e-14 relative.
        let q = 0.5 + u * (1.0 / 6 + u * (1.0 / 24 + u * (1.0 / 120)))
        return a * (u * u * q)
    }
    if m <= 1 { return a * (expm1(u) - u) }  // loses at most 11 of 53 bits
    return (b - a) - a * u  // both parts have the result's sign structure: at most log2|u| bits lost
}

/// `KL_B(a || b) = a ln(a/b) + (1-a) ln((1-a)/(1-b))` from the clamped log-probabilities
/// `la = ln a`, `lb = ln b` (SPEC §4.7). `0 ln 0 = 0`; positive mass against zero mass is `+inf`.
/// Written as `a k3(ln b - ln a) + (1-a) k3(ln(1-b) - ln(1-a))`: both parts are >= 0.
@inline(__always)
func binaryKL(_ la: Double, _ lb: Double) -> Double {
    if la.isNaN || lb.isNaN { return .nan }
    if la == lb { return 0 }
    // The ends of [0, 1] (reachable only with eps = 0).
    if la == -.infinity { return lb == 0 ? .infinity : -log(-expm1(lb)) }  // a = 0: -ln(1 - b)
    if la == 0 { return -lb }  // a = 1: -ln b (+inf for b = 0)
    if lb == -.infinity || lb == 0 { return .infinity }  // a in (0, 1) against b = 0 or 1
    let a = exp(la), b = exp(lb)
    let c = -expm1(la), d = -expm1(lb)  // 1 - a, 1 - b, both > 0 here
    let lc = log(c), ld = log(d)
    return weightedK3(a: a, b: b, u: lb - la) + weightedK3(a: c, b: d, u: ld - lc)
}

/// `p_t - p_r` from the unclamped log-probabilities, without cancellation near equality:
/// `p_r expm1(delta)` below 0, `p_t (-expm1(-delta))` above (neither overflows).
@inline(__always)
func binaryDifference(_ lt: Double, _ lr: Double) -> Double {
    if lt == lr { return 0 }  // also lt = lr = -inf (SPEC §4.7)
    let delta = lt - lr
    return delta < 0 ? exp(lr) * expm1(delta) : exp(lt) * -expm1(-delta)  // NaN stays NaN
}

/// One binary estimator's float64 value (SPEC §4.7). `bkl` is `KL_B(a_r || a_t)`, rollout first.
@inline(__always)
func binaryValue(_ estimator: Estimator, lt: Double, lr: Double, clamp: BinaryClamp) -> Double {
    switch estimator {
    case .bdiff: return binaryDifference(lt, lr)
    case .btv: return Swift.abs(binaryDifference(lt, lr))
    case .bkl: return binaryKL(clamp(lr), clamp(lt))
    case .bklTR: return binaryKL(clamp(lt), clamp(lr))
    case .bklSym:
        let forward = binaryKL(clamp(lr), clamp(lt)), backward = binaryKL(clamp(lt), clamp(lr))
        return forward.isNaN || backward.isNaN ? .nan : Swift.max(forward, backward)
    default: return .nan  // not a binary estimator: never asked (callers check `isBinary`)
    }
}

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

// MARK: - Eight tokens at a time in float32

/// The binary estimators a call needs, decided once (so the per-chunk branches are predictable).
struct BinaryNeeds: OptionSet {
    let rawValue: UInt8
    static let difference = BinaryNeeds(rawValue: 1)
    /// `bkl`, rollout first.
    static let forward = BinaryNeeds(rawValue: 2)
    /// `bkl_tr`, training first.
    static let backward = BinaryNeeds(rawValue: 4)

    init(rawValue: UInt8) { self.rawValue = rawValue }

    init(_ estimator: Estimator) {
        switch estimator {
        case .bdiff, .btv: self = .difference
        case .bkl: self = .forward
        case .bklTR: self = .backward
        case .bklSym: self = [.forward, .backward]
        default: self = []
        }
    }
}

/// The three binary values of eight tokens (lanes a call does not need are unspecified).
struct BinaryLanes {
    var difference = Lanes()
    var forward = Lanes()
    var backward = Lanes()

    /// One estimator's lanes.
    @inline(__always)
    func value(_ estimator: Estimator) -> Lanes {
        switch estimator {
        case .bdiff: difference
        case .btv: absolute(difference)
        case .bkl: forward
        case .bklTR: backward
        default: lanewiseMax(forward, backward)  // bkl_sym; both are never NaN on fast lanes, see `binaryLanes`
        }
    }
}

/// Lanes where the float32 formulas below hold their accuracy: for the difference, both inputs
/// finite in `[-80, 80]` (no overflow or subnormal in `exp`); for the KL, also both clamped
/// log-probabilities in `[-80, -1e-30]` (probabilities normal and below 1, so `1 - p` is a normal
/// float32). Each mask depends on a lane's own inputs only.
@inline(__always)
func binaryFastLanes(_ lt: Lanes, _ lr: Lanes, _ logLow: Lanes, _ logHigh: Lanes) -> (difference: LaneMask, kl: LaneMask) {
    let limit = Lanes(repeating: 80)
    let difference = laneMask(absolute(lt) .<= limit) & laneMask(absolute(lr) .<= limit)  // false for NaN
    let top = Lanes(repeating: -1e-30)
    let m = lanewiseMin(lanewiseMax(lt, logLow), logHigh), l = lanewiseMin(lanewiseMax(lr, logLow), logHigh)
    let kl = difference & laneMask(m .>= -limit) & laneMask(m .<= top) & laneMask(l .>= -limit) & laneMask(l .<= top)
    return (difference, kl)
}

/// The binary estimators of eight tokens (SPEC §4.7). Lanes in `binaryFastLanes` are computed in
/// float32 without cancellation; the others (and only they, so every lane's value depends on its
/// own inputs alone, whatever chunk it sits in) by the float64 `binaryValue`.
///
/// Float32 accuracy (each step a few ulps, no cancellation; measured in the tests): with
/// `a = p_r`, `b = p_t` clamped, `u = ln b - ln a`, `s = expm1(u)`,
/// `KL_B(a || b) = a k3(u) + (1 - a) g(r)`, `r = -a s / (1 - a) = (1-b)/(1-a) - 1`,
/// `g(r) = r - log1p(r)` (an atanh series for |r| <= 1/2, `r - ln((1-b)/(1-a))` beyond), both
/// parts >= 0, so the relative error of the sum is that of its parts (about 1e-6, within SPEC's
/// 1e-5). `D = sign(delta) e^max(lt, lr) (-expm1(-|delta|))`: within 2e-7 for |D| <= 1.
@inline(__always)
func binaryLanes(_ lt: Lanes, _ lr: Lanes, needs: BinaryNeeds, clamp: BinaryClamp, logLow: Lanes, logHigh: Lanes) -> BinaryLanes {
    let kl = !needs.isDisjoint(with: [.forward, .backward])
    let fast = binaryFastLanes(lt, lr, logLow, logHigh)
    let safe = Lanes(repeating: -1)
    var out = BinaryLanes()
    if needs.contains(.difference) {
        out.difference = fastDifference(select(fast.difference, lt, safe), select(fast.difference, lr, safe))
    }
    if kl {
        let t = select(fast.kl, lt, safe), r = select(fast.kl, lr, safe)  // slow lanes: harmless stand-ins
        let m = lanewiseMin(lanewiseMax(t, logLow), logHigh), l = lanewiseMin(lanewiseMax(r, logLow), logHigh)
        (out.forward, out.backward) = fastBinaryKL(l, m, needs: needs)
    }
    // `anySet(~m)`, not `m != all`: a whole-vector integer comparison compiles to a lane loop.
    if (needs.contains(.difference) && anySet(~fast.difference)) || (kl && anySet(~fast.kl)) {
        slowBinaryLanes(lt, lr, fast, needs: needs, clamp: clamp, into: &out)
    }
    return out
}

/// The lanes outside `fast`, from the float64 formulas. Out of line: real data rarely gets here.
@inline(never)
func slowBinaryLanes(_ lt: Lanes, _ lr: Lanes, _ fast: (difference: LaneMask, kl: LaneMask), needs: BinaryNeeds,
                     clamp: BinaryClamp, into out: inout BinaryLanes) {
    for lane in 0..<Lanes.scalarCount {
        let t = Double(lt[lane]), r = Double(lr[lane])
        if needs.contains(.difference) && fast.difference[lane] == 0 { out.difference[lane] = Float(binaryDifference(t, r)) }
        guard fast.kl[lane] == 0 else { continue }
        if needs.contains(.forward) { out.forward[lane] = Float(binaryValue(.bkl, lt: t, lr: r, clamp: clamp)) }
        if needs.contains(.backward) { out.backward[lane] = Float(binaryValue(.bklTR, lt: t, lr: r, clamp: clamp)) }
    }
}

/// `-expm1(-m)` for `m >= 0`: `1 - e^-m`, without cancellation near 0.
@inline(__always)
func oneMinusExpNegative(_ m: Lanes) -> Lanes {
    let small = laneMask(m .< Lanes(repeating: seriesLimit))
    let series = m - seriesK3(-m)  // -(-m + k3(-m))
    guard anySet(~small) else { return series }
    return select(small, series, 1 - fastExp(-m))
}

/// `p_t - p_r = sign(delta) e^max(lt, lr) (1 - e^-|delta|)` on fast lanes.
@inline(__always)
func fastDifference(_ lt: Lanes, _ lr: Lanes) -> Lanes {
    let delta = lt - lr
    let top = lanewiseMax(lt, lr)
    let magnitude = fastExp(top) * oneMinusExpNegative(absolute(delta))
    return select(laneMask(delta .< 0), -magnitude, magnitude)
}

/// `KL_B(a || b)` and `KL_B(b || a)` from clamped `l = ln a`, `m = ln b` on fast lanes.
@inline(__always)
func fastBinaryKL(_ l: Lanes, _ m: Lanes, needs: BinaryNeeds) -> (forward: Lanes, backward: Lanes) {
    let a = fastExp(l), b = fastExp(m)
    let c = oneMinusExpNegative(-l), d = oneMinusExpNegative(-m)  // 1 - a, 1 - b
    let u = m - l
    let smallU = laneMask(absolute(u) .< Lanes(repeating: seriesLimit))
    var k3u = seriesK3(u), k3v = seriesK3(-u)
    var s = u + k3u  // expm1(u)
    if anySet(~smallU) {
        let eu = fastExp(u)  // |u| <= 80: neither 0 nor inf
        let large = eu - 1
        s = select(smallU, s, large)
        k3u = select(smallU, k3u, large - u)
        // e^-u from 1 / e^u, not from 1 + s (which cancels when u is very negative).
        k3v = select(smallU, k3v, (1 / eu - 1) + u)
    }
    let gap = a * s  // b - a
    var forward = Lanes(), backward = Lanes()
    if needs.contains(.forward) { forward = a * k3u + c * bernoulliTail(-gap / c, d / c) }
    if needs.contains(.backward) { backward = b * k3v + d * bernoulliTail(gap / d, c / d) }
    return (forward, backward)
}

/// `g(r) = r - log1p(r)` given `r` and `q = 1 + r` (each computed without cancellation): for
/// |r| <= 1/2 the series `g = w (r - 2 z P(z))`, `w = r / (2 + r)`, `z = w^2` (from
/// `log1p(r) = 2 atanh(w)`; the first term left out is below 1e-9 relative); beyond, `r - ln q`.
@inline(__always)
func bernoulliTail(_ r: Lanes, _ q: Lanes) -> Lanes {
    let w = r / (2 + r)
    let z = w * w
    // Horner on 1/3 + z/5 + ... + z^7/17, written out (an array literal here would allocate).
    var p = Lanes(repeating: 1.0 / 17)
    p = Lanes(repeating: 1.0 / 15).addingProduct(p, z)
    p = Lanes(repeating: 1.0 / 13).addingProduct(p, z)
    p = Lanes(repeating: 1.0 / 11).addingProduct(p, z)
    p = Lanes(repeating: 1.0 / 9).addingProduct(p, z)
    p = Lanes(repeating: 1.0 / 7).addingProduct(p, z)
    p = Lanes(repeating: 1.0 / 5).addingProduct(p, z)
    p = Lanes(repeating: 1.0 / 3).addingProduct(p, z)
    let series = w * (r - 2 * z * p)
    let small = laneMask(absolute(r) .<= Lanes(repeating: 0.5))
    guard anySet(~small) else { return series }
    return select(small, series, r - fastLog(q))
}

/// `ln x` for positive normal finite float32 lanes, within a few ulps: `x = m 2^e` with
/// `m` in [sqrt(1/2), sqrt(2)), `ln m = 2 atanh(f / (2 + f))`, `f = m - 1` (exact), and `e ln 2`
/// in two parts (Cephes' split).
@inline(__always)
func fastLog(_ x: Lanes) -> Lanes {
    let bits = x.bitPattern
    var m = Lanes(bitPattern: (bits & LaneMask(repeating: 0x007f_ffff)) | LaneMask(repeating: 0x3f80_0000))  // [1, 2)
    // The biased exponent as a float: 2^23 + e_biased has e_biased in its low mantissa bits.
    var e = Lanes(bitPattern: (bits &>> 23) | LaneMask(repeating: 0x4b00_0000)) - Lanes(repeating: 8_388_608 + 127)
    let high = laneMask(m .> Lanes(repeating: 1.414_213_56))
    m = select(high, m * 0.5, m)
    e = select(high, e + 1, e)
    let f = m - 1
    let w = f / (2 + f)
    let z = w * w
    var p = Lanes(repeating: 1.0 / 9)
    p = Lanes(repeating: 1.0 / 7).addingProduct(p, z)
    p = Lanes(repeating: 1.0 / 5).addingProduct(p, z)
    p = Lanes(repeating: 1.0 / 3).addingProduct(p, z)
    let logM = (2 * w).addingProduct(2 * w * z, p)
    return logM.addingProduct(e, Lanes(repeating: -2.121_944_40e-4)).addingProduct(e, Lanes(repeating: 0.693_359_375))
}

/// The clamp bounds of `BinaryClamp` as float32 lanes (rounded to nearest: a lane within one
/// float32 rounding of a bound is clamped within 1e-7 relative of the float64 clamp).
extension BinaryClamp {
    var lanes: (low: Lanes, high: Lanes) { (Lanes(repeating: Float(logLow)), Lanes(repeating: Float(logHigh))) }
}

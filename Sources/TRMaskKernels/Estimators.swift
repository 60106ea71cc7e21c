#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Per-token estimators of `delta = logp_train - logp_roll` (SPEC §2), and the binary
/// estimators of the sampled token's probabilities (SPEC §4.7); raw values are the header's
/// `TRM_EST_*`.
public enum Estimator: Int32, Sendable, CaseIterable {
    case delta = 0, k1 = 1, k2 = 2, k3 = 3, abs = 4, ratio = 5, tv = 6, value = 7
    /// `p_t - p_r`, `|p_t - p_r|`, `KL_B(a_r || a_t)`, `KL_B(a_t || a_r)`, the larger of the two
    /// (SPEC §4.7): computed from `lt` and `lr` by the rules pass (`RulesPass`), never from delta.
    case bdiff = 8, btv = 9, bkl = 10, bklTR = 11, bklSym = 12

    /// The estimators of delta (and `value`): the ones the row scan reduces and the per-row
    /// arrays of the metrics and partials index by raw value.
    public static let deltaCount = 8

    /// Values are >= 0 for every input (SPEC §4.6 refuses a negative upper bound for these).
    public var isNonNegative: Bool {
        self == .k2 || self == .k3 || self == .abs || self == .ratio || self == .tv || self == .btv || isBinaryKL
    }

    /// A function of `p_t` and `p_r` (SPEC §4.7), which needs both log-probabilities.
    public var isBinary: Bool { rawValue >= Estimator.bdiff.rawValue }

    var isBinaryKL: Bool { self == .bkl || self == .bklTR || self == .bklSym }

    /// How the estimator moves with delta, which decides how row extremes are taken from the
    /// row's extreme deltas instead of from every token's value.
    var shape: Shape {
        switch self {
        case .delta, .ratio, .value: .increasing
        case .k1: .decreasing
        case .k2, .k3, .abs, .tv: .valley
        case .bdiff, .btv, .bkl, .bklTR, .bklSym: .increasing  // not functions of delta: never asked
        }
    }

    enum Shape { case increasing, decreasing, valley }
}

/// Below this |delta| the exponential estimators use the float32 series of `smallDeltaK3`;
/// at or above it they take the float64 path. Chosen so that both paths agree in rounding at the
/// switch: k3, ratio and tv stay monotone across it (checked exhaustively around the switch and on
/// a dense grid by the tests).
let seriesLimit: Float = 0.34657359  // ln(2) / 2

/// `exp(d) - 1 - d` for |d| < `seriesLimit`, without cancellation: `d^2/2 + d^3 s(d)`. The
/// leading term is the correctly rounded `d^2/2` (the k2 estimator) plus its exact rounding error
/// (by FMA), so the result is within about 0.6 ulp of the true value; `k3 >= 0`, and `k3 == 0`
/// exactly where the true value rounds to 0 in float32 (d == 0, or |d| below about 3.7e-23).
@inline(__always)
func seriesK3(_ d: Lanes) -> Lanes {
    let half = 0.5 * d
    let k2 = half * d  // correctly rounded d^2 / 2
    let k2Error = (-k2).addingProduct(half, d)  // d^2/2 - k2, exact for normal results
    // t(d) = 2 (exp(d) - 1 - d - d^2/2) / d^3 to the d^5 term: the first term left out adds
    // under 3e-9 relative on |d| < ln2/2.
    var t = Lanes(repeating: 2.0 / 40320)
    t = Lanes(repeating: 2.0 / 5040).addingProduct(t, d)
    t = Lanes(repeating: 2.0 / 720).addingProduct(t, d)
    t = Lanes(repeating: 2.0 / 120).addingProduct(t, d)
    t = Lanes(repeating: 2.0 / 24).addingProduct(t, d)
    t = Lanes(repeating: 2.0 / 6).addingProduct(t, d)
    return k2 + k2Error.addingProduct(k2 * d, t)
}

/// The three exponential estimators of SPEC §2 for eight deltas. Lanes with
/// |d| < `seriesLimit` use the float32 series; the others (and only they, so every lane's value
/// depends on its own delta alone) are computed from a float64 exponential and rounded once,
/// which keeps them monotone and within 1 ulp. Overflow gives +inf, never NaN; NaN stays NaN.
@inline(__always)
func exponentialEstimates(_ d: Lanes) -> (k3: Lanes, ratio: Lanes, tv: Lanes) {
    let series = seriesExponentials(d)
    let large = laneMask(absolute(d) .>= Lanes(repeating: seriesLimit))  // not set for NaN
    guard anySet(large) else { return series }
    let exact = largeLaneExponentials(d, large)
    return (select(large, exact.k3, series.k3), select(large, exact.ratio, series.ratio), select(large, exact.tv, series.tv))
}

/// The exponential estimators from the float32 series, valid for |d| < `seriesLimit`.
@inline(__always)
func seriesExponentials(_ d: Lanes) -> (k3: Lanes, ratio: Lanes, tv: Lanes) {
    let k3 = seriesK3(d)
    let expm1 = d + k3
    return (k3, 1 + expm1, absolute(expm1))
}

/// k3 alone, as `exponentialEstimates(d).k3`.
@inline(__always)
func k3Estimate(_ d: Lanes) -> Lanes {
    let k3 = seriesK3(d)
    let large = laneMask(absolute(d) .>= Lanes(repeating: seriesLimit))
    return anySet(large) ? select(large, largeLaneExponentials(d, large).k3, k3) : k3
}

/// k3 as a summand of the row sums (SPEC §3), on small lanes (|d| < `seriesLimit`): `d^2 q(d)` by
/// plain Horner, seven operations instead of `seriesK3`'s ten. Within 3 ulps (sums need 2e-6 of
/// the sum of magnitudes, not the per-token 0.6 ulp that keeps per-token outputs monotone); never
/// negative. Every scan adds the same summand for the same delta, so sums stay bit-identical
/// across layouts.
@inline(__always)
func seriesK3Summand(_ d: Lanes) -> Lanes {
    // q(d) = (exp(d) - 1 - d) / d^2 to the d^5 term: what is left out is under 1e-7 relative.
    var q = Lanes(repeating: 1.0 / 5040)
    q = Lanes(repeating: 1.0 / 720).addingProduct(q, d)
    q = Lanes(repeating: 1.0 / 120).addingProduct(q, d)
    q = Lanes(repeating: 1.0 / 24).addingProduct(q, d)
    q = Lanes(repeating: 1.0 / 6).addingProduct(q, d)
    q = Lanes(repeating: 0.5).addingProduct(q, d)
    return (d * d) * q
}

/// `seriesK3Summand` on small lanes, the float64 path elsewhere.
@inline(__always)
func k3Summand(_ d: Lanes) -> Lanes {
    let summand = seriesK3Summand(d)
    let large = laneMask(absolute(d) .>= Lanes(repeating: seriesLimit))
    return anySet(large) ? select(large, largeLaneExponentials(d, large).k3, summand) : summand
}

/// The exponential estimators from a float64 exponential, rounded once, on the lanes of `large`
/// (other lanes are 0). Out of line: real data rarely gets here, and the hot loops stay small.
@inline(never)
func largeLaneExponentials(_ d: Lanes, _ large: LaneMask) -> (k3: Lanes, ratio: Lanes, tv: Lanes) {
    var result = (k3: Lanes(), ratio: Lanes(), tv: Lanes())
    for lane in 0..<Lanes.scalarCount where large[lane] != 0 {
        let x = Double(d[lane])
        let e = exp(x)
        result.k3[lane] = e.isInfinite ? .infinity : Float(e - 1 - x)
        result.ratio[lane] = Float(e)
        result.tv[lane] = Float(Swift.abs(e - 1))
    }
    return result
}

/// The estimator's value for eight (already clamped) deltas: the per-token float32 outputs of
/// SPEC §2, and the single definition every kernel uses, so row extremes taken from extreme deltas
/// equal the extremes of the per-token values bit for bit.
@inline(__always)
func estimate(_ estimator: Estimator, _ d: Lanes) -> Lanes {
    switch estimator {
    case .delta, .value: return d
    case .k1: return -d
    case .k2: return (0.5 * d) * d  // 0.5 * d is exact, so one rounding: correctly rounded (as in seriesK3)
    case .abs: return absolute(d)
    case .k3: return k3Estimate(d)
    case .ratio: return exponentialEstimates(d).ratio
    case .tv: return exponentialEstimates(d).tv
    case .bdiff, .btv, .bkl, .bklTR, .bklSym: return Lanes(repeating: .nan)  // not functions of delta: never asked
    }
}

/// `estimate` for one delta (lane 0 of a vector), for the handful of per-row evaluations.
@inline(__always)
func estimate(_ estimator: Estimator, _ d: Float) -> Float {
    estimate(estimator, Lanes(repeating: d))[0]
}

/// Clamps to [-limit, limit] and keeps NaN (SPEC §2: the clamp applies before every estimator).
@inline(__always)
func clamped(_ d: Lanes, _ limit: Float) -> Lanes {
    let upper = Lanes(repeating: limit)
    return d.replacing(with: upper, where: d .> upper).replacing(with: -upper, where: d .< -upper)
}

// Error-bound calculator (SPEC §7): the paper's bounds on the surrogate-objective error as a
// function of the sequence length T and the measured divergences. Pure Swift, no Foundation, no
// libm (only `squareRoot()`), no allocation, never traps.

/// Inputs of the error-bound calculator (SPEC §7). Sums in the bounds run over `t = 1..T`.
///
/// `klMax` is `delta = D_KL^{tok,max}`: the theorems need the maximum token KL over **all reachable
/// contexts**. A maximum taken over a training batch is only a plug-in estimate of that quantity,
/// so bounds computed from it are estimates, not guarantees.
public struct BoundInputs {
    /// Sequence length `T`, `>= 1`.
    public var T: Int64
    /// `delta = D_KL^{tok,max}` in nats, finite and `>= 0` (a batch maximum is only a plug-in
    /// estimate of the maximum over all reachable contexts).
    public var klMax: Double
    /// `D_KL^{seq}` in nats, finite and `>= 0`.
    public var klSeq: Double
    /// `eps = D_TV^{tok,max}`, finite and `>= 0`; `nil` means the Pinsker value `sqrt(klMax / 2)`.
    public var eps: Double?
    /// `D_TV^{seq}`, finite and `>= 0`; `nil` means `sqrt(klSeq / 2)`.
    public var tvSeq: Double?
    /// Per-position mean TV `Dbar_1..Dbar_T`: `count == T`, each finite and `>= 0`. `nil` means
    /// `eps` at every position. Read only during the call.
    public var dbar: UnsafeBufferPointer<Double>?
    /// `r_max - r_min`, finite and `> 0`; every bound is multiplied by it (bounds are stated for
    /// rewards in `[0, 1]`).
    public var rewardRange: Double

    public init(
        T: Int64, klMax: Double, klSeq: Double, eps: Double? = nil, tvSeq: Double? = nil,
        dbar: UnsafeBufferPointer<Double>? = nil, rewardRange: Double = 1
    ) {
        self.T = T
        self.klMax = klMax
        self.klSeq = klSeq
        self.eps = eps
        self.tvSeq = tvSeq
        self.dbar = dbar
        self.rewardRange = rewardRange
    }
}

/// Every bound of SPEC §7, already multiplied by `rewardRange`. Sums run over `t = 1..T`;
/// `delta = klMax`, `Dbar_t = eps` when no `dbar` is given. All values are `>= 0` and never NaN;
/// the classical bounds (order T^2, unbounded in `eps`) can overflow to `+inf` for extreme inputs.
public struct Bounds: Equatable, Sendable {
    /// Classical (TV): `2 T (T-1) eps^2`. Order T^2.
    public var classicalTV: Double
    /// Classical (KL): `T (T-1) delta`. Order T^2.
    public var classicalKL: Double
    /// Coupling: `4 min(1,eps) sum_t min(1, (t-1) eps)`. Order T.
    public var coupling: Double
    /// Pinsker-marginal (KL): `4 min(1, sqrt(delta/2)) sum_t min(1, sqrt((t-1) delta/2))`.
    /// Order T^1.5 (the paper's `(4/3) T^1.5 delta` is its closed-form upper bound, not its value).
    public var pmKL: Double
    /// Pinsker-marginal (TV): `4 min(1,eps) sum_t min(1, sqrt((t-1) delta/2))`. Order T^1.5.
    public var pmTV: Double
    /// Mixed (KL): `4 T min(1, sqrt(delta/2)) min(1, sqrt(kl_seq/2))`. Order T.
    public var mixedKL: Double
    /// Mixed (TV): `4 T min(1,eps) min(1, tv_seq)`. Order T.
    public var mixedTV: Double
    /// Linear: `4 sum_t Dbar_t`. Order T.
    public var linear: Double
    /// Adaptive (hybrid): `4 sum_t Dbar_t min(1, (T-t) eps, sqrt((T-t) delta/2))`. Order set by
    /// the data (`Dbar`).
    public var adaptive: Double
    /// Unified `B* = min(pmKL, pmTV, mixedKL, mixedTV, coupling, adaptive)`.
    public var unified: Double

    public init(
        classicalTV: Double, classicalKL: Double, coupling: Double, pmKL: Double, pmTV: Double,
        mixedKL: Double, mixedTV: Double, linear: Double, adaptive: Double, unified: Double
    ) {
        self.classicalTV = classicalTV
        self.classicalKL = classicalKL
        self.coupling = coupling
        self.pmKL = pmKL
        self.pmTV = pmTV
        self.mixedKL = mixedKL
        self.mixedTV = mixedTV
        self.linear = linear
        self.adaptive = adaptive
        self.unified = unified
    }
}

/// The argument of `BoundInputs` that failed validation (SPEC §7, §11): one case per argument.
public enum BoundsInputError: Error, Equatable {
    /// `T < 1`.
    case badLength
    /// `klMax` negative, NaN or infinite.
    case badKLMax
    /// `klSeq` negative, NaN or infinite.
    case badKLSeq
    /// `eps` given and negative, NaN or infinite.
    case badEps
    /// `tvSeq` given and negative, NaN or infinite.
    case badTVSeq
    /// `dbar` given with `count != T`, or with an element that is negative, NaN or infinite.
    case badDbar
    /// `rewardRange` not finite or `<= 0`.
    case badRewardRange
}

/// Every error bound of SPEC §7 for the given inputs, each multiplied by `rewardRange`.
///
/// Validates every argument first (see `BoundsInputError`) and never traps.
///
/// The sums are the exact finite sums, not closed-form upper bounds. Without `dbar` they are
/// evaluated in O(log T) plus at most 1024 directly added terms (capped sums have closed forms
/// past their cap index; `sum sqrt(k)` uses Euler–Maclaurin), so `T = 10^9` takes microseconds;
/// with `dbar`, `linear` and `adaptive` take one
/// O(T) pass with Neumaier-compensated summation. Accuracy: a few ulps relative per bound
/// (tested to 1e-12 against `Tests/vectors/bounds.json` and brute-force summation).
///
/// `klMax` is only a plug-in estimate when it is a batch maximum: the theorems need the maximum
/// token KL over all reachable contexts.
public func errorBounds(_ inputs: BoundInputs) -> Result<Bounds, BoundsInputError> {
    guard inputs.T >= 1 else { return .failure(.badLength) }
    let n = inputs.T
    let delta = inputs.klMax
    guard isFiniteNonNegative(delta) else { return .failure(.badKLMax) }
    guard isFiniteNonNegative(inputs.klSeq) else { return .failure(.badKLSeq) }
    let half = delta / 2
    let eps: Double
    if let given = inputs.eps {
        guard isFiniteNonNegative(given) else { return .failure(.badEps) }
        eps = given
    } else {
        eps = half.squareRoot()
    }
    let tvSeq: Double
    if let given = inputs.tvSeq {
        guard isFiniteNonNegative(given) else { return .failure(.badTVSeq) }
        tvSeq = given
    } else {
        tvSeq = (inputs.klSeq / 2).squareRoot()
    }
    let range = inputs.rewardRange
    guard range.isFinite, range > 0 else { return .failure(.badRewardRange) }
    // The O(T) scan of dbar comes after every O(1) check.
    if let dbar = inputs.dbar {
        guard Int64(dbar.count) == n else { return .failure(.badDbar) }
        for value in dbar where !isFiniteNonNegative(value) {
            return .failure(.badDbar)
        }
    }

    // Operands below are never NaN (validated, finite, >= 0), so Swift.min is order-independent.
    let count = Double(n)
    let pairs = count * Double(n - 1)  // T (T-1), exact up to 2^53 and 1 ulp beyond
    let capEps = min(1, eps)
    let capPinsker = min(1, half.squareRoot())
    // Left to right so that T = 1 gives 0 * eps * eps = 0, never 0 * inf.
    let classicalTV = 2 * pairs * eps * eps
    let classicalKL = pairs * delta

    // k = t - 1 for coupling and PM; k = T - t for adaptive: both run over 0..T-1.
    let coupling = 4 * capEps * cappedSum(count: n, slope: eps, scale: nil)
    let pinskerSum = cappedSum(count: n, slope: nil, scale: half)
    let pmKL = 4 * capPinsker * pinskerSum
    let pmTV = 4 * capEps * pinskerSum
    let mixedKL = 4 * count * capPinsker * min(1, (inputs.klSeq / 2).squareRoot())
    let mixedTV = 4 * count * capEps * min(1, tvSeq)

    let linear: Double
    let adaptive: Double
    if let dbar = inputs.dbar {
        var linearSum = NeumaierSum()
        var adaptiveSum = NeumaierSum()
        var k = n  // k = T - t for the element at index t - 1
        for value in dbar {
            k -= 1
            let kd = Double(k)
            linearSum.add(value)
            adaptiveSum.add(value * min(1, min(kd * eps, (kd * half).squareRoot())))
        }
        linear = 4 * linearSum.value
        adaptive = 4 * adaptiveSum.value
    } else {
        linear = 4 * count * eps
        // eps * sum first: with eps near the largest finite Double and a zero sum, 4 * eps
        // would overflow and meet 0 (NaN).
        adaptive = 4 * (eps * cappedSum(count: n, slope: eps, scale: half))
    }
    let unified = min(min(min(pmKL, pmTV), min(mixedKL, mixedTV)), min(coupling, adaptive))

    return .success(
        Bounds(
            classicalTV: classicalTV * range, classicalKL: classicalKL * range,
            coupling: coupling * range, pmKL: pmKL * range, pmTV: pmTV * range,
            mixedKL: mixedKL * range, mixedTV: mixedTV * range, linear: linear * range,
            adaptive: adaptive * range, unified: unified * range))
}

@inline(__always)
private func isFiniteNonNegative(_ x: Double) -> Bool {
    x.isFinite && x >= 0
}

/// Neumaier (improved Kahan–Babuška) compensated sum: error about one ulp of the result for any
/// number of terms. Once the sum overflows it stays `+inf` (the compensation is dropped).
private struct NeumaierSum {
    private var sum: Double = 0
    private var compensation: Double = 0

    mutating func add(_ x: Double) {
        let t = sum + x
        if sum.magnitude >= x.magnitude {
            compensation += (sum - t) + x
        } else {
            compensation += (x - t) + sum
        }
        sum = t
    }

    var value: Double { sum.isFinite ? sum + compensation : sum }
}

/// `sum_{k=0}^{n-1} min(1, k * slope, sqrt(k * scale))`, where a `nil` parameter drops its term
/// (both `nil`: every term is 1). `slope`, `scale` finite and `>= 0`; `n >= 0`. O(log n) plus
/// at most 1024 terms added directly by `sqrtRangeSum`.
///
/// The term is non-decreasing in `k`, so the indices form three runs: linear `k * slope` for
/// `k < L`, `sqrt(scale) * sqrt(k)` for `L <= k < M`, and 1 for `k >= M`. `M` (cap) and `L`
/// (crossover, `k slope^2 > scale`) are found by bisection on predicates that are monotone in
/// floating point, so the split agrees with term-by-term evaluation except where the two sides of
/// a comparison differ by an ulp (where the choice changes the sum by an ulp).
/// The linear run is `slope * m (m-1) / 2`; the sqrt run is `sqrtRangeSum`.
private func cappedSum(count n: Int64, slope: Double?, scale: Double?) -> Double {
    guard n > 0 else { return 0 }
    if slope == 0 || scale == 0 { return 0 }
    // M: first k with the floating-point term >= 1, as term-by-term evaluation would see it.
    let cap = firstIndex(in: 0, n) { k in
        let kd = Double(k)
        if let slope, kd * slope < 1 { return false }
        if let scale, (kd * scale).squareRoot() < 1 { return false }
        return true
    }
    // L: first k >= 1 where the sqrt term is the smaller one. sqrt(k) * slope > sqrt(scale) is
    // k slope^2 > scale without underflow, and monotone in k.
    let crossover: Int64
    switch (slope, scale) {
    case (nil, _): crossover = 0
    case (_, nil): crossover = n
    case (let slope?, let scale?):
        let rootScale = scale.squareRoot()
        crossover = firstIndex(in: 1, n) { k in Double(k).squareRoot() * slope > rootScale }
    }
    var total = Double(n - cap)
    let linearEnd = min(crossover, cap)
    if let slope, linearEnd > 1 {
        total += slope * (Double(linearEnd) * Double(linearEnd - 1) * 0.5)
    }
    if let scale, crossover < cap {
        total += scale.squareRoot() * sqrtRangeSum(from: crossover, through: cap - 1)
    }
    return total
}

/// Smallest `k` in `lo..<hi` with `predicate(k)`, or `hi` if there is none.
/// `predicate` must be monotone (false then true) on `lo..<hi`. At most 64 evaluations.
private func firstIndex(in lo: Int64, _ hi: Int64, where predicate: (Int64) -> Bool) -> Int64 {
    var lo = lo
    var hi = hi
    while lo < hi {
        let mid = lo + (hi - lo) / 2
        if predicate(mid) { hi = mid } else { lo = mid + 1 }
    }
    return lo
}

/// Below this index `sqrtRangeSum` adds terms directly; from it on it uses Euler–Maclaurin.
private let eulerMaclaurinStart: Int64 = 1024

/// `sum_{k=a}^{b} sqrt(k)` for `0 <= a`, `0` when `b < a`. Relative error a few ulps.
///
/// Terms below 1024 are added directly (compensated, at most 1024 of them). From
/// `a' = max(a, 1024)` to `b` the Euler–Maclaurin formula is used on the range itself (no
/// subtraction of two prefix sums, so short ranges far from 0 keep full relative accuracy):
/// `integral + (f(a') + f(b))/2 + sum_j B_2j/(2j)! (f^(2j-1)(b) - f^(2j-1)(a'))` with three
/// correction terms. Its remainder is below `1.1e-4 * a'^(-4.5) < 4e-18` absolute, against a sum
/// of at least `sqrt(1024) = 32`.
func sqrtRangeSum(from a: Int64, through b: Int64) -> Double {
    guard a <= b, a >= 0 else { return 0 }
    var direct = NeumaierSum()
    var k = a
    while k <= b, k < eulerMaclaurinStart {
        direct.add(Double(k).squareRoot())
        k += 1
    }
    guard k <= b else { return direct.value }
    let lo = Double(k)
    let hi = Double(b)
    let rootLo = lo.squareRoot()
    let rootHi = hi.squareRoot()
    // (2/3)(hi^1.5 - lo^1.5) = (2/3) (hi - lo) (hi + sqrt(lo hi) + lo) / (sqrt(hi) + sqrt(lo)),
    // all terms positive: no cancellation. hi - lo is taken in integers, exactly.
    let integral = (2.0 / 3.0) * (Double(b - k) / (rootLo + rootHi)) * (lo + rootLo * rootHi + hi)
    let ends = 0.5 * (rootLo + rootHi)
    // f' = x^-1/2 / 2, f''' = (3/8) x^-5/2, f^(5) = (105/32) x^-9/2; B2/2! = 1/12,
    // B4/4! = -1/720, B6/6! = 1/30240.
    let invLo = 1 / rootLo
    let invHi = 1 / rootHi
    let inv5Lo = invLo * invLo * invLo * invLo * invLo
    let inv5Hi = invHi * invHi * invHi * invHi * invHi
    let inv9Lo = inv5Lo * invLo * invLo * invLo * invLo
    let inv9Hi = inv5Hi * invHi * invHi * invHi * invHi
    let corrections = (invHi - invLo) / 24 - (inv5Hi - inv5Lo) / 1920 + (inv9Hi - inv9Lo) / 9216
    return direct.value + (integral + ends + corrections)
}

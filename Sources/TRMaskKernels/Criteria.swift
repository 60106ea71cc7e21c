#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// How a criterion reduces a row (SPEC §4.1, §4.4); raw values are the header's `TRM_AGG_*`.
public enum Aggregation: Int32, Sendable, CaseIterable {
    case max = 0, min = 1, sum = 2, mean = 3, token = 4
    /// SER, the sequence error rate: the row mean of `tv` (SPEC §4.4).
    case ser = 5
    /// LN-TRM: `sum_t w_t tv_t / sum_t w_t` with the position weights of SPEC §4.4.
    case lnTRM = 6
    /// The geometric-mean ratio band (SPEC §4.9): `g = mean_t delta` (float64 sum / count), kept iff
    /// `ln lo <= g <= ln hi`, decided in log space; the row statistic is `g` rounded to float32.
    case geo = 7

    /// SER and LN-TRM are defined on `tv` only, `geo` on `ratio` (its bounds are ratios).
    var requiredEstimator: Estimator? {
        switch self {
        case .ser, .lnTRM: .tv
        case .geo: .ratio
        default: nil
        }
    }
}

/// What a NaN delta on a valid token does (SPEC §4.5); raw values are `TRM_NAN_*`.
public enum NaNPolicy: Int32, Sendable, CaseIterable {
    /// The row fails every row criterion and its statistics are NaN; the token fails token
    /// criteria. Fail closed: a NaN never keeps a row.
    case reject = 0
    /// The token is treated as invalid.
    case skip = 1
    /// `delta := 0`, i.e. `rho = 1`.
    case zero = 2
}

/// `lo <= aggregation(estimator) <= hi`, inclusive; an infinite bound disables its side.
public struct Criterion: Sendable, Equatable {
    public var aggregation: Aggregation
    public var estimator: Estimator
    public var lo: Double
    public var hi: Double
    /// LN-TRM only: the per-token KL bound `kl_max` of the position weights (finite, > 0).
    public var klMax: Double
    /// LN-TRM only: the per-token TV bound `eps` of the position weights; 0 = none.
    public var eps: Double

    public init(_ aggregation: Aggregation, _ estimator: Estimator, lo: Double = -.infinity, hi: Double = .infinity,
                klMax: Double = 0, eps: Double = 0) {
        self.aggregation = aggregation
        self.estimator = estimator
        self.lo = lo
        self.hi = hi
        self.klMax = klMax
        self.eps = eps
    }

    /// The paper's TRM-Max&Avg with the library's defaults (SPEC §4.2): `max k2 <= 0.1` and
    /// `mean k3 <= 0.002`.
    public static let trmDefault = [Criterion(.max, .k2, hi: 0.1), Criterion(.mean, .k3, hi: 0.002)]

    public var isRowCriterion: Bool { aggregation != .token }

    @inline(__always)
    func passes(_ statistic: Float) -> Bool {
        let value = Double(statistic)
        return lo <= value && value <= hi  // false for NaN: fail closed
    }

    /// `geo`: `lo <= exp(g) <= hi` decided as `ln lo <= g <= ln hi` on the float64 log mean `g`
    /// (SPEC §4.9; `ln 0 = -inf`, and a bound of -inf means none).
    func passesInLogSpace(_ g: Double) -> Bool {
        let logLo = lo > 0 ? log(lo) : -Double.infinity
        let logHi = log(hi)  // hi >= 0 (validated); ln 0 = -inf keeps only g = -inf
        return logLo <= g && g <= logHi  // false for NaN: fail closed
    }

    /// LN-TRM takes `kl_max` (finite, > 0) and `eps` (>= 0, 0 = none); other aggregations neither.
    var lengthNeutralIsValid: Bool {
        guard aggregation == .lnTRM else { return klMax == 0 && eps == 0 }
        return klMax.isFinite && klMax > 0 && eps >= 0  // `eps >= 0` refuses NaN
    }

    /// SPEC §4.6: the threshold errors.
    var thresholdIsValid: Bool {
        if lo.isNaN || hi.isNaN || lo > hi { return false }
        if estimator.isNonNegative && hi < 0 { return false }
        if estimator == .ratio && lo.isFinite && lo < 0 { return false }
        return true
    }
}

/// Options shared by the reductions.
public struct ReductionOptions: Sendable {
    public var nanPolicy: NaNPolicy
    /// `delta <- clamp(delta, -clamp, clamp)` before every estimator; `+inf` = none.
    public var clamp: Double
    public var rejectEmpty: Bool
    /// The most threads a call uses: 0 = every processor online, larger counts clamped to them;
    /// calls under 2^14 positions use one (the persistent pool, `WorkerPool`). Results are
    /// identical for every value.
    public var threads: Int
    /// The clamp `eps` of the binary KL estimators (SPEC §4.7): `0 <= eps < 0.5`, 0 = exact.
    public var binaryEps: Double
    /// An advantage-conditioned token rule and/or sequence rule (SPEC §4.8), for the mask and its
    /// token keep; nil = none. Other kernels ignore it.
    public var advantageRule: AdvantageRule?

    /// The binary estimators' default `eps` (verl #6800, prime-rl).
    public static let defaultBinaryEps = 1e-6

    public init(nanPolicy: NaNPolicy = .reject, clamp: Double = .infinity, rejectEmpty: Bool = false, threads: Int = 0,
                binaryEps: Double = ReductionOptions.defaultBinaryEps, advantageRule: AdvantageRule? = nil) {
        self.nanPolicy = nanPolicy
        self.clamp = clamp
        self.rejectEmpty = rejectEmpty
        self.threads = threads
        self.binaryEps = binaryEps
        self.advantageRule = advantageRule
    }
}

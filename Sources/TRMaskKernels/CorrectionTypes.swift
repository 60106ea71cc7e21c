/// Rollout correction in verl's arithmetic (docs/rollout-correction.md, SPEC §8, §8.1): what a call
/// asks for, where it writes, and the statistics it returns. The scan is in `CorrectionKernel`.

/// The level of a rejection option; raw values are the header's `TRM_REJECT_*`.
public enum RejectionLevel: Int32, Sendable, CaseIterable {
    /// Per token: keep the token iff `lo <= k(d_t) <= hi`.
    case token = 0
    /// The row iff `lo <= sum_t m_t k(d_t) <= hi`.
    case sequenceSum = 1
    /// The row iff `lo <= sum_t m_t k(d_t) / (sum_t m_t + 1e-8) <= hi`.
    case sequenceMean = 2
    /// The row iff `lo <= max_{m_t != 0} k(d_t) <= hi` (0 for a row without `m_t != 0`).
    case sequenceMax = 3
}

/// One rejection option (verl's `token_k1`, `seq_mean_k3`, ...): a level, an estimator (`k1`,
/// `k2` or `k3`) and inclusive bounds, compared in the statistic's dtype after rounding to it.
public struct Rejection: Sendable, Equatable {
    public var level: RejectionLevel
    public var estimator: Estimator
    public var lo: Double
    public var hi: Double

    public init(_ level: RejectionLevel, _ estimator: Estimator, lo: Double = -.infinity, hi: Double = .infinity) {
        self.level = level
        self.estimator = estimator
        self.lo = lo
        self.hi = hi
    }

    var isValid: Bool {
        (estimator == .k1 || estimator == .k2 || estimator == .k3) && !lo.isNaN && !hi.isNaN && lo <= hi
    }
}

/// Most rejection options one call takes (`TRM_MAX_REJECTIONS`).
public let maximumRejections = 16

/// What a rollout-correction call computes (`trm_correction_config_t`).
public struct CorrectionConfig: Sendable {
    /// The dtype of the per-token arithmetic (verl: the log-ratio's): f32, f64, f16 or bf16.
    public var computeDType: DType
    /// The dtype of mean denominators `sum_t m + 1e-8` (verl: a float mask's dtype, else f32).
    public var meanDType: DType
    /// The mask's values weight sums and means (else nonzero = 1).
    public var maskWeights: Bool
    /// The clamp of `d` and of the sequence weight's row sum (verl: 20).
    public var clamp: Double
    public var threads: Int
    public var rejections: [Rejection]
    /// Importance weights: level token or sequence, mode truncate or mask; nil = none.
    public var weightRule: WeightRule?
    /// Divide the weights by `norm_factor` (verl's batch normalisation on one process).
    public var normalize: Bool

    public init(computeDType: DType = .f32, meanDType: DType = .f32, maskWeights: Bool = false, clamp: Double = 20,
                threads: Int = 0, rejections: [Rejection] = [], weightRule: WeightRule? = nil, normalize: Bool = false) {
        self.computeDType = computeDType
        self.meanDType = meanDType
        self.maskWeights = maskWeights
        self.clamp = clamp
        self.threads = threads
        self.rejections = rejections
        self.weightRule = weightRule
        self.normalize = normalize
    }
}

extension WeightRule {
    /// A rule verl's rollout correction can express: token or sequence level; truncate with a
    /// positive cap, or mask with `0 < lo <= hi`; no NaN.
    var isCorrectionRule: Bool {
        guard level == .token || level == .sequence, hi > 0 else { return false }  // refuses NaN
        switch mode {
        case .truncate: return lo == 0
        case .mask: return lo > 0 && lo <= hi
        case .clip: return false
        }
    }

    /// The lower bound verl's statistics use: `lo` (mask) or `1 / hi` (truncate).
    var statisticsLower: Double { mode == .mask ? lo : 1 / hi }
}

/// An output over the token grid in a caller-chosen dtype.
public struct TypedOut: @unchecked Sendable {
    public var base: UnsafeMutableRawPointer?
    public var dtype: DType
    public var rowStride: Int
    public var colStride: Int

    public init(base: UnsafeMutableRawPointer?, dtype: DType, rowStride: Int = 0, colStride: Int = 1) {
        self.base = base
        self.dtype = dtype
        self.rowStride = rowStride
        self.colStride = colStride
    }

    public static var absent: TypedOut { TypedOut(base: nil, dtype: .f32) }
}

/// Where a rollout-correction call writes; every output is optional.
public struct CorrectionOutputs: @unchecked Sendable {
    /// Token grid `m * keep` in the mask's dtype.
    public var mask: TypedOut
    /// `[rows]`: 1 = no token with `m != 0` of the row is rejected.
    public var keepRow: OutView<UInt8>
    /// Token grid of weights (f32, f64, f16 or bf16).
    public var weights: TypedOut
    public var statistics: UnsafeMutablePointer<CorrectionStatistics>?

    public init(mask: TypedOut = .absent, keepRow: OutView<UInt8> = .absent, weights: TypedOut = .absent,
                statistics: UnsafeMutablePointer<CorrectionStatistics>? = nil) {
        self.mask = mask
        self.keepRow = keepRow
        self.weights = weights
        self.statistics = statistics
    }
}

/// Statistics of the importance weights (`trm_weight_stats_t`; formulas in the header).
public struct WeightStatistics: Sendable, Equatable {
    public var mean = Double.nan, max = Double.nan, min = Double.nan, std = Double.nan
    public var effectiveSampleSize = Double.nan
    public var ratioFractionHigh = Double.nan, ratioFractionLow = Double.nan
    public var seqMean = Double.nan, seqStd = Double.nan, seqMax = Double.nan, seqMin = Double.nan
    public var seqMaxDeviation = Double.nan, seqFractionHigh = Double.nan, seqFractionLow = Double.nan
    public var oobRatio = Double.nan
    public var normSum = Double.nan, normCount = Double.nan, normFactor = Double.nan
    public init() {}
}

/// Statistics of one rejection option (`trm_rejection_stats_t`).
public struct RejectionStatistics: Sendable, Equatable {
    public var mean = Double.nan, max = Double.nan, min = Double.nan, std = Double.nan
    public var fractionHigh = Double.nan, fractionLow = Double.nan
    public var seqMean = Double.nan, seqStd = Double.nan, seqMax = Double.nan, seqMin = Double.nan
    public var seqMaxDeviation = Double.nan, seqFractionHigh = Double.nan, seqFractionLow = Double.nan
    public var maskedFraction = Double.nan, seqMaskedFraction = Double.nan
    public init() {}
}

/// verl's off-policy diagnostics (`trm_offpolicy_stats_t`).
public struct OffPolicyStatistics: Sendable, Equatable {
    public var kl = Double.nan, k3KL = Double.nan
    public var trainingPPL = Double.nan, trainingLogPPL = Double.nan, rolloutPPL = Double.nan, rolloutLogPPL = Double.nan
    public var logPPLDiff = Double.nan, logPPLAbsDiff = Double.nan, logPPLDiffMax = Double.nan, logPPLDiffMin = Double.nan
    public var pplRatio = Double.nan, chi2Token = Double.nan, chi2Seq = Double.nan
    public init() {}
}

/// Every statistic of one rollout-correction call (`trm_correction_stats_t`).
public struct CorrectionStatistics: Sendable, Equatable {
    public var rows = 0, validRows = 0, validTokens = 0
    public var maskSum = 0.0
    public var maskedFraction = Double.nan, seqMaskedFraction = Double.nan
    public var weights = WeightStatistics()
    public var offPolicy = OffPolicyStatistics()
    /// One per rejection option, in order.
    public var rejections: [RejectionStatistics] = []
    public init() {}
}

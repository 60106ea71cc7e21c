/// Reads one row sixteen positions at a time: the raw stream value (delta, or the given value)
/// and whether each position is valid by the mask. Positions past `count` are never read.
protocol ChunkReader {
    /// Positions `p ..< p + 16`.
    func chunk(at p: Int) -> (value: Lanes, valid: LaneMask)
    /// Positions `p ..< p + count`, `count < 16`; the other lanes are invalid.
    func partialChunk(at p: Int, count: Int) -> (value: Lanes, valid: LaneMask)
}

/// The sums a call needs, one bit per float64 sum slot.
struct SumSet: OptionSet {
    let rawValue: UInt8
    static let linear = SumSet(rawValue: 1)  // delta, k1 (its negation) and value
    static let k2 = SumSet(rawValue: 2)
    static let k3 = SumSet(rawValue: 4)
    static let abs = SumSet(rawValue: 8)
    static let ratio = SumSet(rawValue: 16)
    static let tv = SumSet(rawValue: 32)

    init(rawValue: UInt8) { self.rawValue = rawValue }

    init(_ estimator: Estimator) {
        switch estimator {
        case .delta, .k1, .value: self = .linear
        case .k2: self = .k2
        case .k3: self = .k3
        case .abs: self = .abs
        case .ratio: self = .ratio
        case .tv: self = .tv
        }
    }
}

/// Per-call settings of the scan, decided once from the criteria and options.
struct ScanPlan {
    var nanPolicy: NaNPolicy
    /// Float32 clamp limit, or nil for none.
    var clamp: Float?
    var sums: SumSet
    /// Track the deltas nearest to zero on each side (for `min` of k2, k3, abs, tv).
    var nearZero: Bool
    var tokenCriteria: [Criterion]

    init(criteria: [Criterion], options: ReductionOptions) {
        nanPolicy = options.nanPolicy
        clamp = options.clamp.isFinite ? Float(options.clamp) : nil
        var sums: SumSet = []
        var nearZero = false
        for criterion in criteria {
            switch criterion.aggregation {
            case .sum, .mean: sums.formUnion(SumSet(criterion.estimator))
            case .min: nearZero = nearZero || criterion.estimator.shape == .valley
            case .max, .token: break
            }
        }
        self.sums = sums
        self.nearZero = nearZero
        tokenCriteria = criteria.filter { !$0.isRowCriterion }
    }

    /// Applies the NaN policy and the clamp to a chunk: the stream value each lane's estimators
    /// see, the lanes that count, and the lanes that enter the row statistics.
    @inline(__always)
    func prepare(_ raw: Lanes, _ valid: LaneMask) -> (value: Lanes, counted: LaneMask, reduced: LaneMask, nan: LaneMask) {
        let nan = valid .& (raw .!= raw)
        var value = raw
        var counted = valid
        var reduced = valid .& .!nan
        switch nanPolicy {
        case .reject: break
        case .skip: counted = reduced
        case .zero:
            value = value.replacing(with: 0, where: nan)
            reduced = valid
        }
        if let clamp { value = clamped(value, clamp) }
        return (value, counted, reduced, nan)
    }
}

/// Sixteen lanes of running row statistics. Lane `j` sees positions `p ≡ j (mod 16)` in order;
/// the float64 lane sums are combined by a fixed tree at the end of the row, so a row's sums do
/// not depend on layout, strides, or threads. Counters are float32 lanes, exact while each lane
/// has seen fewer than 2^24 positions: the scan flushes them into a `RowSummary` every block.
struct LaneStats {
    var counted = Lanes(repeating: 0)
    var nonfinite = Lanes(repeating: 0)
    var nans = Lanes(repeating: 0)
    var maxValue = Lanes(repeating: -.infinity)
    var minValue = Lanes(repeating: .infinity)
    var minNonNegative = Lanes(repeating: .infinity)
    var maxNonPositive = Lanes(repeating: -.infinity)
    var sums = (WideLanes(), WideLanes(), WideLanes(), WideLanes(), WideLanes(), WideLanes())

    /// Positions per counter flush: 2^20 positions give each lane at most 2^16 counts.
    static let blockLength = 1 << 20

    /// Adds one chunk; returns the stream value the estimators see (NaN policy and clamp
    /// applied) and the lanes token criteria judge.
    @inline(__always)
    mutating func add(_ raw: Lanes, _ valid: LaneMask, plan: ScanPlan) -> (value: Lanes, tokenValid: LaneMask) {
        let (value, counted, reduced, nan) = plan.prepare(raw, valid)
        let one = Lanes(repeating: 1)
        let zero = Lanes(repeating: 0)
        self.counted += zero.replacing(with: one, where: counted)
        nonfinite += zero.replacing(with: one, where: valid .& .!(absolute(raw) .< .infinity))
        nans += zero.replacing(with: one, where: nan)
        maxValue = maxValue.replacing(with: value, where: reduced .& (value .> maxValue))
        minValue = minValue.replacing(with: value, where: reduced .& (value .< minValue))
        if plan.nearZero {
            minNonNegative = minNonNegative.replacing(with: value, where: reduced .& (value .>= 0) .& (value .< minNonNegative))
            maxNonPositive = maxNonPositive.replacing(with: value, where: reduced .& (value .<= 0) .& (value .> maxNonPositive))
        }
        if !plan.sums.isEmpty {
            let d = zero.replacing(with: value, where: reduced)
            if plan.sums.contains(.linear) { sums.0 += widen(d) }
            if plan.sums.contains(.k2) { sums.1 += widen(estimate(.k2, d)) }
            if plan.sums.contains(.abs) { sums.3 += widen(absolute(d)) }
            if !plan.sums.isDisjoint(with: [.k3, .ratio, .tv]) {
                let e = exponentialEstimates(d)
                if plan.sums.contains(.k3) { sums.2 += widen(e.k3) }
                // Lanes outside `reduced` hold d = 0, where ratio = 1: mask them out.
                if plan.sums.contains(.ratio) { sums.4 += widen(zero.replacing(with: e.ratio, where: reduced)) }
                if plan.sums.contains(.tv) { sums.5 += widen(e.tv) }
            }
        }
        return (value, plan.nanPolicy == .skip ? reduced : valid)
    }
}

/// Float lanes widened to float64 lanes, exactly.
@inline(__always)
func widen(_ x: Lanes) -> WideLanes {
    var wide = WideLanes()
    for lane in 0..<16 { wide[lane] = Double(x[lane]) }
    return wide
}

/// Fixed-order sum of sixteen float64 lanes: a balanced tree, halves first.
@inline(__always)
func treeSum(_ x: WideLanes) -> Double {
    let eight = x.lowHalf + x.highHalf
    let four = eight.lowHalf + eight.highHalf
    let two = four.lowHalf + four.highHalf
    return two[0] + two[1]
}

/// A lane counter's total (small integers: exact in float32 lanes and in their float64 sum).
@inline(__always)
func laneCount(_ x: Lanes) -> Int { Int(treeSum(widen(x))) }

/// One row's statistics, after its lanes are combined.
struct RowSummary {
    var counted = 0
    var nonfinite = 0
    var nans = 0
    var maxValue: Float = -.infinity
    var minValue: Float = .infinity
    var minNonNegative: Float = .infinity
    var maxNonPositive: Float = -.infinity
    var sums = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0)

    /// Moves a block's counters out of the lanes (and zeroes them).
    @inline(__always)
    mutating func flushCounters(_ lanes: inout LaneStats) {
        counted += laneCount(lanes.counted)
        nonfinite += laneCount(lanes.nonfinite)
        nans += laneCount(lanes.nans)
        lanes.counted = .zero
        lanes.nonfinite = .zero
        lanes.nans = .zero
    }

    /// Takes the extremes and sums at the end of the row. The lanes hold no NaN (NaN positions
    /// never enter them), so plain min/max are order-independent.
    mutating func finish(_ lanes: LaneStats) {
        maxValue = lanes.maxValue.max()
        minValue = lanes.minValue.min()
        minNonNegative = lanes.minNonNegative.min()
        maxNonPositive = lanes.maxNonPositive.max()
        sums = (treeSum(lanes.sums.0), treeSum(lanes.sums.1), treeSum(lanes.sums.2),
                treeSum(lanes.sums.3), treeSum(lanes.sums.4), treeSum(lanes.sums.5))
    }

    /// The row statistic a criterion tests (SPEC §3). Rows without counted tokens give 0; under
    /// the reject policy a row with a NaN gives NaN.
    func statistic(_ criterion: Criterion, nanPolicy: NaNPolicy) -> Float {
        if nanPolicy == .reject && nans > 0 { return .nan }
        if counted == 0 { return 0 }
        let estimator = criterion.estimator
        switch criterion.aggregation {
        case .sum: return Float(sum(estimator))
        case .mean: return Float(sum(estimator) / Double(counted))
        case .max:
            switch estimator.shape {
            case .increasing: return estimate(estimator, maxValue)
            case .decreasing: return estimate(estimator, minValue)
            case .valley: return Swift.max(estimate(estimator, maxValue), estimate(estimator, minValue))
            }
        case .min:
            switch estimator.shape {
            case .increasing: return estimate(estimator, minValue)
            case .decreasing: return estimate(estimator, maxValue)
            case .valley:
                // Nearest to zero on each side; a side exists iff the extremes reach it.
                let right = maxValue >= 0 ? estimate(estimator, minNonNegative) : Float.infinity
                let left = minValue <= 0 ? estimate(estimator, maxNonPositive) : Float.infinity
                return Swift.min(right, left)
            }
        case .token: return 0
        }
    }

    private func sum(_ estimator: Estimator) -> Double {
        switch estimator {
        case .delta, .value: sums.0
        case .k1: -sums.0
        case .k2: sums.1
        case .k3: sums.2
        case .abs: sums.3
        case .ratio: sums.4
        case .tv: sums.5
        }
    }
}

/// Reads one row a chunk (`chunkWidth` positions) at a time: the raw stream value (delta, or the given value)
/// and whether each position is valid by the mask. Positions past `count` are never read.
protocol ChunkReader {
    /// Positions `p ..< p + chunkWidth`.
    func chunk(at p: Int) -> (value: Lanes, valid: LaneMask)
    /// Positions `p ..< p + count`, `count < chunkWidth`; the other lanes are invalid.
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
    /// `expm1(2 delta) = e (e + 2)`, `e = expm1(delta)`: the chi-square metric (SPEC §9).
    static let chi2 = SumSet(rawValue: 64)
    /// delta before the clamp: the log-perplexity metric (SPEC §9).
    static let raw = SumSet(rawValue: 128)

    init(rawValue: UInt8) { self.rawValue = rawValue }

    init(_ estimator: Estimator) {
        switch estimator {
        case .delta, .k1, .value: self = .linear
        case .k2: self = .k2
        case .k3: self = .k3
        case .abs: self = .abs
        case .ratio: self = .ratio
        case .tv: self = .tv
        case .bdiff, .btv, .bkl, .bklTR, .bklSym: self = []  // reduced by the rules pass
        }
    }

    /// The sums the metrics of a call need besides the criteria's (`docs/metrics.md`).
    static func metrics(_ batch: Batch) -> SumSet {
        switch batch.source {
        case .values: .linear
        case .logRatio: [.linear, .k3, .chi2, .abs]
        case .logProbs: [.linear, .k3, .chi2, .raw, .abs]
        }
    }
}

/// Per-call settings of the scan, decided once from the criteria and options. Plain values only,
/// so passing it into the hot loop costs no reference counting.
struct ScanPlan {
    var nanPolicy: NaNPolicy
    /// Float32 clamp limit (`+inf` for none).
    var clamp: Float
    var sums: SumSet
    /// Whether a sum needs the exponential estimators (ratio, tv, chi2).
    var exponentialSums: Bool
    /// Track the deltas nearest to zero on each side (for `min` of k2, k3, abs, tv).
    var nearZero: Bool
    /// Chunks whose valid lanes are all below this in magnitude take the fast path: finite, not
    /// NaN, untouched by the clamp, and inside the float32 series of the exponential estimators.
    var fastLimit: Lanes

    /// `extraSums`: sums wanted besides the criteria's (metrics, sequence weights).
    init(criteria: [Criterion], options: ReductionOptions, extraSums: SumSet = []) {
        nanPolicy = options.nanPolicy
        clamp = options.clamp.isFinite ? Float(options.clamp) : .infinity
        var sums = extraSums
        var nearZero = false
        for criterion in criteria {
            switch criterion.aggregation {
            case .sum, .mean, .ser: sums.formUnion(SumSet(criterion.estimator))
            case .geo: sums.formUnion(.linear)
            case .min: nearZero = nearZero || criterion.estimator.shape == .valley
            case .max, .token, .lnTRM: break
            }
        }
        self.sums = sums
        exponentialSums = sums.contains(.ratio) || sums.contains(.tv) || sums.contains(.chi2)
        self.nearZero = nearZero
        fastLimit = Lanes(repeating: Swift.min(seriesLimit, clamp))
    }

    /// Whether `ValleyScan` serves a call: maxima of valley-shaped estimators (k2, k3, abs, tv),
    /// sums or means of k3, LN-TRM (its statistic comes from a second pass) and no other sums,
    /// such as the paper's TRM-Max&Avg.
    func valleyServes(_ criteria: [Criterion]) -> Bool {
        sums.subtracting(.k3).isEmpty && criteria.allSatisfy { c in
            switch c.aggregation {
            case .max: c.estimator.shape == .valley
            case .sum, .mean: c.estimator == .k3
            case .token, .lnTRM: true
            case .min, .ser, .geo: false
            }
        }
    }
}

/// What a scan keeps, fixed at compile time so specialised loops carry no dead work.
protocol ScanShape {
    /// true: extremes over valid lanes only, nearest-to-zero trackers and every sum the plan
    /// asks for. false (`ValleyScan`): extremes of the delta with invalid lanes read as 0 (enough
    /// for maxima of valley-shaped estimators, whose value at 0 is their minimum) and the k3 sum.
    static var general: Bool { get }
}

enum GeneralScan: ScanShape { static var general: Bool { true } }
enum ValleyScan: ScanShape { static var general: Bool { false } }

/// Lane-wise max and min of NaN-free lanes (a compare and blend: one `vmaxps`/`vminps`; the
/// stdlib's `pointwiseMax` is an out-of-line call).
@inline(__always)
func lanewiseMax(_ a: Lanes, _ b: Lanes) -> Lanes { a.replacing(with: b, where: b .> a) }

@inline(__always)
func lanewiseMin(_ a: Lanes, _ b: Lanes) -> Lanes { a.replacing(with: b, where: b .< a) }

/// One chunk after the NaN policy and the clamp.
struct ChunkTerms {
    /// What estimators and token criteria see.
    var value: Lanes
    /// `value` on the lanes that enter the statistics, 0 elsewhere.
    var d: Lanes
    /// `d` before the clamp.
    var unclamped: Lanes
    var counted: LaneMask
    var reduced: LaneMask
    var tokenValid: LaneMask
    /// Valid lanes whose raw value is NaN or ±inf, and those that are NaN.
    var nonfinite = LaneMask()
    var nans = LaneMask()

    /// A chunk whose valid lanes are all small: nothing to decide.
    @inline(__always)
    init(small raw: Lanes, valid: LaneMask) {
        value = raw
        d = masked(raw, valid)
        unclamped = d
        counted = valid
        reduced = valid
        tokenValid = valid
    }

    /// Any chunk: the small case inline, the general one out of line (second passes over a row).
    @inline(__always)
    init(_ raw: Lanes, valid: LaneMask, plan: ScanPlan) {
        self = LaneStats.isSmall(raw, valid, plan: plan) ? ChunkTerms(small: raw, valid: valid) : ChunkTerms(raw: raw, valid: valid, plan: plan)
    }

    /// The general chunk: NaN policy, non-finite and NaN counts, the clamp. Out of line, and a
    /// pure function of its inputs (nothing of the caller's escapes into it), so the hot loop's
    /// accumulators stay in registers.
    @inline(never)
    init(raw: Lanes, valid: LaneMask, plan: ScanPlan) {
        let nan = valid & laneMask(raw .!= raw)
        nonfinite = valid & ~laneMask(absolute(raw) .< .infinity)
        nans = nan
        value = raw
        counted = valid
        reduced = valid & ~nan
        switch plan.nanPolicy {
        case .reject: break
        case .skip: counted = reduced
        case .zero:
            value = masked(value, ~nan)
            reduced = valid
        }
        unclamped = masked(value, reduced)
        value = clamped(value, plan.clamp)
        d = masked(value, reduced)
        tokenValid = plan.nanPolicy == .skip ? reduced : valid
    }
}

/// Float32 partial sums of one group of eight chunks (64 positions): lane `j` adds the terms of
/// positions `p ≡ j (mod 8)` of the group in order. Each partial adds at most eight terms in
/// float32 (error under 4.2e-7 of their magnitudes, far inside SPEC §3's 2e-6) before it is
/// widened into the row's float64 lanes. The grouping counts positions from the row start, so
/// every layout and thread count adds the same numbers in the same order: results are
/// bit-identical.
struct GroupSums {
    var linear = Lanes(), k2 = Lanes(), k3 = Lanes(), abs = Lanes(), ratio = Lanes(), tv = Lanes()
    var chi2 = Lanes(), raw = Lanes()

    /// Chunks per group.
    static let chunks = 8
    /// Positions per group.
    static let width = chunks * chunkWidth
}

/// The float64 lane sums of one row, one per sum the plan may ask for.
struct WideSums {
    var linear = SIMD8<Double>(), k2 = SIMD8<Double>(), k3 = SIMD8<Double>()
    var abs = SIMD8<Double>(), ratio = SIMD8<Double>(), tv = SIMD8<Double>()
    var chi2 = SIMD8<Double>(), raw = SIMD8<Double>()

    /// Widens a finished group's float32 partials into the lanes.
    @inline(always)
    mutating func add(_ group: GroupSums, plan: ScanPlan) {
        if plan.sums.contains(.linear) { linear += widen(group.linear) }
        if plan.sums.contains(.k2) { k2 += widen(group.k2) }
        if plan.sums.contains(.k3) { k3 += widen(group.k3) }
        if plan.sums.contains(.abs) { abs += widen(group.abs) }
        if plan.sums.contains(.ratio) { ratio += widen(group.ratio) }
        if plan.sums.contains(.tv) { tv += widen(group.tv) }
        if plan.sums.contains(.chi2) { chi2 += widen(group.chi2) }
        if plan.sums.contains(.raw) { raw += widen(group.raw) }
    }
}

/// Running statistics of one row: counts and extremes in eight float32 lanes, sums in eight float64
/// lanes (fed by `GroupSums`); the rare counts (non-finite, NaN) live in the `RowSummary`. Float32
/// counters are exact while a lane has counted fewer than 2^24 tokens: the scan flushes them every
/// `blockLength` positions.
struct LaneStats {
    var counted = SIMD8<Float>()
    var nonfinite = SIMD8<Float>()
    var nans = SIMD8<Float>()
    var maxValue = SIMD8<Float>(repeating: -.infinity)
    var minValue = SIMD8<Float>(repeating: .infinity)
    var minNonNegative = SIMD8<Float>(repeating: .infinity)
    var maxNonPositive = SIMD8<Float>(repeating: -.infinity)
    var sums = WideSums()

    /// Positions per counter flush (a multiple of a group's 64): each lane then counts at most
    /// 2^20 tokens, exact in float32.
    static let blockLength = 1 << 20

    /// Whether every valid lane is small: finite, not NaN, untouched by the clamp, inside the
    /// float32 series (almost every chunk of real mismatch data).
    @inline(__always)
    static func isSmall(_ raw: Lanes, _ valid: LaneMask, plan: ScanPlan) -> Bool {
        !anySet(valid & ~laneMask(absolute(raw) .< plan.fastLimit))
    }

    /// Adds any chunk to the lanes and the group; returns the value the estimators see (NaN policy
    /// and clamp applied) and the lanes token criteria judge. The small path has no calls, so the
    /// loop around it keeps every accumulator in registers.
    @inline(always)
    mutating func add<Shape: ScanShape>(_ raw: Lanes, _ valid: LaneMask, plan: ScanPlan, group: inout GroupSums,
                                        _ shape: Shape.Type) -> (value: Lanes, tokenValid: LaneMask) {
        if LaneStats.isSmall(raw, valid, plan: plan) {
            accumulate(ChunkTerms(small: raw, valid: valid), plan: plan, group: &group, allSmall: true, Shape.self)
            return (raw, valid)
        }
        let terms = ChunkTerms(raw: raw, valid: valid, plan: plan)
        nonfinite += ones(terms.nonfinite)
        nans += ones(terms.nans)
        accumulate(terms, plan: plan, group: &group, allSmall: false, Shape.self)
        return (terms.value, terms.tokenValid)
    }

    /// `allSmall`: every lane of `terms.d` is inside the float32 series (a literal at each call
    /// site, so the small path compiles without the float64 fallback).
    @inline(always)
    mutating func accumulate<Shape: ScanShape>(_ terms: ChunkTerms, plan: ScanPlan, group: inout GroupSums, allSmall: Bool,
                                               _ shape: Shape.Type) {
        let d = terms.d
        counted += ones(terms.counted)
        guard Shape.general else {
            maxValue = lanewiseMax(maxValue, d)
            minValue = lanewiseMin(minValue, d)
            if plan.sums.contains(.k3) { group.k3 += allSmall ? seriesK3Summand(d) : k3Summand(d) }
            return
        }
        maxValue = lanewiseMax(maxValue, select(terms.reduced, d, Lanes(repeating: -.infinity)))
        minValue = lanewiseMin(minValue, select(terms.reduced, d, Lanes(repeating: .infinity)))
        if plan.nearZero {
            let nonNegative = terms.reduced & laneMask(d .>= 0), nonPositive = terms.reduced & laneMask(d .<= 0)
            minNonNegative = lanewiseMin(minNonNegative, select(nonNegative, d, Lanes(repeating: .infinity)))
            maxNonPositive = lanewiseMax(maxNonPositive, select(nonPositive, d, Lanes(repeating: -.infinity)))
        }
        if plan.sums.contains(.linear) { group.linear += d }
        if plan.sums.contains(.k2) { group.k2 += (0.5 * d) * d }
        if plan.sums.contains(.abs) { group.abs += absolute(d) }
        if plan.sums.contains(.k3) { group.k3 += allSmall ? seriesK3Summand(d) : k3Summand(d) }
        if plan.sums.contains(.raw) { group.raw += terms.unclamped }
        if plan.exponentialSums {
            let e = allSmall ? seriesExponentials(d) : exponentialEstimates(d)
            // Lanes outside `reduced` hold d = 0, where ratio is 1: mask them out.
            if plan.sums.contains(.ratio) { group.ratio += masked(e.ratio, terms.reduced) }
            if plan.sums.contains(.tv) { group.tv += e.tv }
            if plan.sums.contains(.chi2) {
                // expm1(d) is tv with the sign of d; (e + 2) e has no cancellation near 0.
                let expm1 = Lanes(bitPattern: e.tv.bitPattern | (d.bitPattern & LaneMask(repeating: 0x8000_0000)))
                group.chi2 += (expm1 + 2) * expm1
            }
        }
    }

    /// Widens a finished group into the float64 lanes. A valley scan has only the k3 sum (its
    /// plan has no other), and saying so at compile time keeps the other partials out of the hot
    /// loop's registers.
    @inline(always)
    mutating func flush<Shape: ScanShape>(_ group: GroupSums, plan: ScanPlan, _ shape: Shape.Type) {
        if Shape.general {
            sums.add(group, plan: plan)
        } else if plan.sums.contains(.k3) {
            sums.k3 += widen(group.k3)
        }
    }
}

/// The number of set lanes (as a small integer, exact in float32).
@inline(__always)
func laneCount(_ m: LaneMask) -> Int { Int(ones(m).sum()) }

/// Fixed-order sum of eight float64 lanes: a balanced tree.
@inline(__always)
func treeSum(_ x: SIMD8<Double>) -> Double {
    let four = x.lowHalf + x.highHalf
    return (four[0] + four[2]) + (four[1] + four[3])
}

/// One row's statistics, after its lanes are combined.
struct RowSummary {
    var counted = 0
    var nonfinite = 0
    var nans = 0
    var maxValue: Float = -.infinity
    var minValue: Float = .infinity
    var minNonNegative: Float = .infinity
    var maxNonPositive: Float = -.infinity
    var sums = RowSums()

    /// Moves a block's counters out of the lanes (and zeroes them).
    @inline(__always)
    mutating func flushCounters(_ lanes: inout LaneStats) {
        counted += Int(lanes.counted.sum())
        nonfinite += Int(lanes.nonfinite.sum())
        nans += Int(lanes.nans.sum())
        lanes.counted = SIMD8<Float>()
        lanes.nonfinite = SIMD8<Float>()
        lanes.nans = SIMD8<Float>()
    }

    /// Takes the extremes and sums at the end of the row. The lanes hold no NaN (NaN positions
    /// never enter them), so plain min/max are order-independent.
    mutating func finish(_ lanes: LaneStats) {
        maxValue = lanes.maxValue.max()
        minValue = lanes.minValue.min()
        minNonNegative = lanes.minNonNegative.min()
        maxNonPositive = lanes.maxNonPositive.max()
        finishSums(lanes.sums)
    }
    /// Combines the float64 lanes of each sum in the fixed tree.
    mutating func finishSums(_ wide: WideSums) {
        sums = RowSums(linear: treeSum(wide.linear), k2: treeSum(wide.k2), k3: treeSum(wide.k3), abs: treeSum(wide.abs),
                       ratio: treeSum(wide.ratio), tv: treeSum(wide.tv), chi2: treeSum(wide.chi2), raw: treeSum(wide.raw))
    }

    /// The row statistic a criterion tests (SPEC §3). Rows without counted tokens give 0; under
    /// the reject policy a row with a NaN gives NaN.
    func statistic(_ criterion: Criterion, nanPolicy: NaNPolicy) -> Float {
        if nanPolicy == .reject && nans > 0 { return .nan }
        if counted == 0 { return 0 }
        let estimator = criterion.estimator
        switch criterion.aggregation {
        case .sum, .mean, .ser: return sumStatistic(criterion.aggregation, sum: sums.of(estimator), count: counted)
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
        case .geo: return Float(sums.linear / Double(counted))  // decided on the float64 mean (`logMean`)
        case .token, .lnTRM: return 0  // LN-TRM: `lengthNeutralStatistic`
        }
    }

    /// `g = mean_t delta` in float64 (SPEC §4.9), by the rules of `statistic`.
    func logMean(nanPolicy: NaNPolicy) -> Double {
        if nanPolicy == .reject && nans > 0 { return .nan }
        return counted == 0 ? 0 : sums.linear / Double(counted)
    }

    /// The float64 sum of `estimator` over the counted tokens, by the rules of `statistic`: 0 for
    /// rows without counted tokens, NaN under the reject policy for a row with a NaN.
    func total(_ estimator: Estimator, nanPolicy: NaNPolicy) -> Double {
        if nanPolicy == .reject && nans > 0 { return .nan }
        return counted == 0 ? 0 : sums.of(estimator)
    }
}

/// One row's float64 sums (those the plan asked for; the others stay 0).
struct RowSums {
    var linear = 0.0, k2 = 0.0, k3 = 0.0, abs = 0.0, ratio = 0.0, tv = 0.0, chi2 = 0.0, raw = 0.0

    func of(_ estimator: Estimator) -> Double {
        switch estimator {
        case .delta, .value: linear
        case .k1: -linear
        case .k2: k2
        case .k3: k3
        case .abs: abs
        case .ratio: ratio
        case .tv: tv
        case .bdiff, .btv, .bkl, .bklTR, .bklSym: .nan  // reduced by the rules pass
        }
    }
}

/// A `sum` statistic, or a mean one (`sum / count`), from a row's float64 sum and its count (> 0),
/// rounded once to float32. The one definition the scan and the decision from merged partials
/// share, so equal sums give equal statistics.
@inline(__always)
func sumStatistic(_ aggregation: Aggregation, sum: Double, count: Int) -> Float {
    aggregation == .sum ? Float(sum) : Float(sum / Double(count))
}

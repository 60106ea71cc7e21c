/// The rollout correction's row sums, kept per lane so that the chunk pass (`CorrectionChunks`,
/// eight positions at a time) and the element pass (`CorrectionKernel`, one position at a time)
/// give the same bits: lane `j` sums the terms of positions `p ≡ j (mod 8)` of a row in position
/// order (float64), and the lanes are combined in one fixed tree. Neither depends on the thread
/// count, the layout or the instruction set (no fused operations; each lane is plain IEEE).

typealias WideMask = SIMDMask<SIMD8<Int64>>

/// A float64 sum of a row's terms, per lane.
struct LaneSum {
    var lanes = WideLanes()

    /// Adds the term of position `p`.
    @inline(__always)
    mutating func add(_ x: Double, at p: Int) { lanes[p & (chunkWidth - 1)] += x }

    /// Adds the terms of eight consecutive positions starting at a multiple of eight (a lane
    /// without a term adds +0, which changes no sum: a lane that starts at +0 never holds -0).
    @inline(always)
    mutating func add(_ x: WideLanes) { lanes += x }

    /// The lanes combined: (j, j + 4) pairs, then (j, j + 2), then the last two.
    var total: Double {
        let four = lanes.lowHalf + lanes.highHalf
        let two = four.lowHalf + four.highHalf
        return two[0] + two[1]
    }
}

/// Moments of a per-token quantity over a row's positions with `m != 0`: what a row record keeps.
struct Moments {
    var weighted = 0.0       // sum m x
    var largest = -Double.infinity
    var smallest = Double.infinity
    var sawNaN = false
    var high = 0.0           // sum m [x > hi]
    var low = 0.0            // sum m [x < lo]
    var clampedSum = 0.0     // sum m c, c = clamp(x, clampLo, clampHi)
    var clampedSquares = 0.0 // sum m c^2

    /// The maximum and minimum, NaN when a NaN was added (torch's reductions propagate NaN).
    var max: Double { sawNaN ? .nan : largest }
    var min: Double { sawNaN ? .nan : smallest }

    /// Moments of one value (a sequence option's row statistic, counted with weight `M_i`), with
    /// the fractions above `option.hi` and below `option.lo`.
    init(_ x: Double, mass m: Double, _ option: PreparedRejection) {
        var lanes = MomentLanes()
        lanes.add(x, mass: m, at: 0, clampLo: option.stdLo, clampHi: option.hi)
        if x > option.hi { lanes.high.add(m, at: 0) }
        if x < option.lo { lanes.low.add(m, at: 0) }
        self = lanes.moments
    }

    init() {}
}

/// `Moments` while a row is scanned, per lane.
struct MomentLanes {
    var weighted = LaneSum(), high = LaneSum(), low = LaneSum(), clampedSum = LaneSum(), clampedSquares = LaneSum()
    var largest = WideLanes(repeating: -.infinity)
    var smallest = WideLanes(repeating: .infinity)
    /// 1 in a lane that saw a NaN.
    var nans = WideLanes()

    /// Adds `x` of position `p`, whose `m != 0`.
    @inline(__always)
    mutating func add(_ x: Double, mass m: Double, at p: Int, clampLo: Double, clampHi: Double) {
        let lane = p & (chunkWidth - 1)
        weighted.add(m * x, at: p)
        if x > largest[lane] { largest[lane] = x }
        if x < smallest[lane] { smallest[lane] = x }
        if x.isNaN { nans[lane] = 1 }
        let c = clamped(x, clampLo, clampHi)
        clampedSum.add(m * c, at: p)
        clampedSquares.add(m * c * c, at: p)
    }

    /// Adds a chunk: `x` where `m != 0` (`absent` marks the lanes with `m = 0`, whose `x` may be
    /// anything and counts nowhere). The same operations per lane as the element `add`.
    @inline(always)
    mutating func add(_ x: WideLanes, mass m: WideLanes, absent: WideMask, clampLo: WideLanes, clampHi: WideLanes) {
        weighted.add((m * x).replacing(with: 0, where: absent))
        let high = x.replacing(with: -.infinity, where: absent), low = x.replacing(with: .infinity, where: absent)
        largest = largest.replacing(with: high, where: high .> largest)
        smallest = smallest.replacing(with: low, where: low .< smallest)
        nans = nans.replacing(with: 1, where: high .!= high)
        // clamp(x) with the lower bound winning, as `clamped` (NaN stays NaN).
        let c = x.replacing(with: clampHi, where: x .> clampHi).replacing(with: clampLo, where: x .< clampLo)
        clampedSum.add((m * c).replacing(with: 0, where: absent))
        clampedSquares.add((m * c * c).replacing(with: 0, where: absent))
    }

    /// The row's moments: sums by `LaneSum.total`; the extremes of the lanes (NaN never wins a
    /// comparison, so the lanes hold no NaN; `sawNaN` says whether one was added).
    var moments: Moments {
        var result = Moments()
        result.weighted = weighted.total
        result.high = high.total
        result.low = low.total
        result.clampedSum = clampedSum.total
        result.clampedSquares = clampedSquares.total
        for lane in 0..<chunkWidth {
            if largest[lane] > result.largest { result.largest = largest[lane] }
            if smallest[lane] < result.smallest { result.smallest = smallest[lane] }
            if nans[lane] != 0 { result.sawNaN = true }
        }
        return result
    }
}

/// One rejection option while a row is scanned. Token options: the moments of `k`, the rejected
/// mass and count. Sequence options: `moments.weighted` is `sum m k` (seq_sum, seq_mean), and
/// `moments.largest` with the NaN lanes the maximum (seq_max).
struct OptionLanes {
    var moments = MomentLanes()
    var rejectedMass = LaneSum()
    var rejected = LaneSum()

    /// Adds a token option's verdict on position `p` (`m != 0`).
    @inline(__always)
    mutating func reject(mass m: Double, at p: Int) {
        rejectedMass.add(m, at: p)
        rejected.add(1, at: p)
    }

    /// Adds the maximum's candidate `x` of position `p` (`m != 0`).
    @inline(__always)
    mutating func addMaximum(_ x: Double, at p: Int) {
        let lane = p & (chunkWidth - 1)
        if x > moments.largest[lane] { moments.largest[lane] = x }
        if x.isNaN { moments.nans[lane] = 1 }
    }

    /// The record of a token option; a sequence option's raw statistic (decided later).
    func record(_ level: RejectionLevel) -> OptionRecord {
        var entry = OptionRecord()
        let totals = moments.moments
        switch level {
        case .token:
            entry.moments = totals
            entry.rejectedMass = rejectedMass.total
            entry.anyRejected = rejected.total > 0
        case .sequenceSum, .sequenceMean:
            entry.statistic = totals.weighted
        case .sequenceMax:
            entry.statistic = totals.max  // -inf for a row without a valid token: `decide` makes it 0
        }
        return entry
    }
}

/// A row's own sums (`CorrectionRowRecord`'s), per lane.
struct RowLanes {
    var mass = LaneSum(), valid = LaneSum(), logRatio = LaneSum(), train = LaneSum(), roll = LaneSum()
    var k3KL = LaneSum(), chi2 = LaneSum()
    /// Positions (with `m != 0`) some token option rejects: their mass and count.
    var tokenRejectedMass = LaneSum(), tokenRejected = LaneSum()

    /// The record's sums.
    func fill(_ record: inout CorrectionRowRecord) {
        record.mass = mass.total
        record.valid = Int(valid.total)
        record.logRatioSum = logRatio.total
        record.trainSum = train.total
        record.rollSum = roll.total
        record.k3KL = k3KL.total
        record.chi2 = chi2.total
    }
}

/// The weights' moments of a row, per lane.
struct WeightLanes {
    var moments = MomentLanes()
    var rawSum = LaneSum(), oob = LaneSum()

    /// Adds position `p` (`m != 0`): `raw = w m` and `weight`, the written weight.
    @inline(__always)
    mutating func add(raw: Double, weight: Double, mass m: Double, at p: Int, _ weights: PreparedWeights) {
        moments.add(weight, mass: m, at: p, clampLo: 0, clampHi: weights.hi)
        if raw > weights.hi { moments.high.add(m, at: p) }
        if raw < weights.lower { moments.low.add(m, at: p) }
        if raw < weights.lo || raw > weights.hi { oob.add(m, at: p) }
        rawSum.add(m * raw, at: p)
    }

    func fill(_ record: inout CorrectionRowRecord) {
        (record.weights, record.rawSum, record.oob) = (moments.moments, rawSum.total, oob.total)
    }
}

/// The per-row pass of the 2026 token rules: the binary estimators of SPEC §4.7 (functions of
/// `logp_train` and `logp_roll` themselves, not of delta) as row statistics and token criteria,
/// and the advantage-conditioned token rule of SPEC §4.8. It runs over a row right before the row
/// scan (which then finds the row in cache), so the scan's hot loops stay as they are: the scan
/// ANDs the token bits written here into its token decisions and takes the binary row statistics
/// from here.

/// A binary estimator's statistics over one row's counted tokens.
struct BinaryRowStats {
    var counted = 0
    /// A NaN value on a counted token (NaN input, reject policy).
    var nan = false
    /// By `rawValue - 8` (five used): float64 sums of the float64 values, and extremes of the
    /// float32 outputs (NaN excluded; `nan` poisons them).
    var sum = SIMD8<Double>()
    var max = SIMD8<Float>(repeating: -.infinity)
    var min = SIMD8<Float>(repeating: .infinity)

    /// The statistic of a row criterion on a binary estimator, by the rules of
    /// `RowSummary.statistic`: 0 for rows without counted tokens; NaN under the reject policy for
    /// a row with a NaN (`deltaNaNs`: the row scan's NaN deltas, which reject the row too).
    func statistic(_ criterion: Criterion, nanPolicy: NaNPolicy, deltaNaNs: Int) -> Float {
        if nanPolicy == .reject && (nan || deltaNaNs > 0) { return .nan }
        if counted == 0 { return 0 }
        let slot = BinaryRowStats.slot(criterion.estimator)
        switch criterion.aggregation {
        case .max: return max[slot]
        case .min: return min[slot]
        case .sum, .mean: return sumStatistic(criterion.aggregation, sum: sum[slot], count: counted)
        case .token, .ser, .lnTRM, .geo: return 0  // refused by validation (ser, LN-TRM: tv; geo: ratio)
        }
    }

    @inline(__always)
    static func slot(_ estimator: Estimator) -> Int { Int(estimator.rawValue) &- Estimator.deltaCount }
}

/// What the rules pass of one call computes, decided once from the criteria and options.
struct RulesPass {
    /// Binary estimators whose row statistics a row criterion (or the metrics) needs.
    let rowEstimators: [Estimator]
    /// Binary token criteria: the slot of their rejection counter, the estimator, the bounds.
    let tokenBands: [(slot: Int, band: TokenBand)]
    /// The advantage token rule, and the first of its counters (after the criteria's).
    let advantage: AdvantageTokenRule?
    let advantageSlot: Int
    let clamp: BinaryClamp
    /// The clamp of delta (`+inf` for none), for the ratio statistic.
    let deltaClamp: Float
    let nanPolicy: NaNPolicy

    /// nil when the call needs no rules pass.
    init?(criteria: [Criterion], options: ReductionOptions, metrics: Bool) {
        var rowEstimators: [Estimator] = []
        var tokenBands: [(slot: Int, band: TokenBand)] = []
        var tokenSlot = criteria.count(where: { $0.isRowCriterion })
        for criterion in criteria {
            if !criterion.isRowCriterion {
                if criterion.estimator.isBinary { tokenBands.append((tokenSlot, TokenBand(criterion))) }
                tokenSlot += 1
            }
            let wanted = criterion.isRowCriterion || metrics
            if criterion.estimator.isBinary && wanted && !rowEstimators.contains(criterion.estimator) {
                rowEstimators.append(criterion.estimator)
            }
        }
        let rule = options.advantageRule.flatMap { $0.statistic == .none ? nil : AdvantageTokenRule($0) }
        guard !rowEstimators.isEmpty || !tokenBands.isEmpty || rule != nil else { return nil }
        self.rowEstimators = rowEstimators
        self.tokenBands = tokenBands
        advantage = rule
        advantageSlot = tokenSlot
        clamp = BinaryClamp(eps: options.binaryEps)
        deltaClamp = options.clamp.isFinite ? Float(options.clamp) : .infinity
        nanPolicy = options.nanPolicy
    }

    /// Whether the pass decides tokens (and so writes token bits).
    var decidesTokens: Bool { !tokenBands.isEmpty || advantage != nil }

    /// The binary values the call reads.
    var needs: BinaryNeeds {
        var needs = advantage?.needs ?? []
        for estimator in rowEstimators { needs.formUnion(BinaryNeeds(estimator)) }
        for (_, band) in tokenBands { needs.formUnion(BinaryNeeds(band.estimator)) }
        return needs
    }

    /// One row's first `count` positions, eight at a time: the binary statistics, and in
    /// `bits[p]` whether a counted token passes every binary token criterion and the advantage
    /// rule (uncounted positions: anything; the scan's own validity decides them). Counts each
    /// token criterion's rejections, and the advantage rule's sides, in `rejected`.
    func scan(_ batch: Batch, row: Int, start: Int, count n: Int, bits: UnsafeMutablePointer<UInt8>?,
              rejected: UnsafeMutableBufferPointer<Int>) -> BinaryRowStats {
        var stats = BinaryRowStats()
        // Log-probs, or (advantage ratio rule only: validated) a log-ratio.
        let primary = RowCursor(batch.source.primary, row: row, start: start, layout: batch.layout)
        let secondary = batch.source.secondary.map { RowCursor($0, row: row, start: start, layout: batch.layout) }
        let wide = primary.dtype == .f64 || secondary?.dtype == .f64
        let mask = batch.mask.map { RowCursor($0, row: row, start: start, layout: batch.layout) }
        let tokenAdvantages = batch.advantages.map { RowCursor($0, row: row, start: start, layout: batch.layout) }
        let rowAdvantage = batch.rowAdvantages.map { loadDouble($0.address(row: 0, col: row), $0.dtype) } ?? .nan
        let needs = self.needs
        let (logLow, logHigh) = clamp.lanes
        var p = 0
        while p < n {
            let width = Swift.min(chunkWidth, n - p)
            // The chunk's inputs; lanes past `width` or not counted hold harmless stand-ins.
            var lt = Lanes(repeating: -1), lr = Lanes(repeating: -1), delta = Lanes()
            var wideInputs = (lt: SIMD8<Double>(repeating: -1), lr: SIMD8<Double>(repeating: -1))
            var counted = LaneMask()
            for lane in 0..<width {
                let q = p &+ lane
                if let mask, mask.float(q) == 0 { continue }
                var t = Double.nan, r = Double.nan, d: Float
                if let secondary {  // the rounding rule of `trm_batch_t`
                    (t, r) = (primary.double(q), secondary.double(q))
                    d = wide ? Float(t - r) : Float(t) - Float(r)
                } else {
                    d = primary.float(q)
                }
                if d.isNaN {  // SPEC §4.5, as the row scan applies it
                    switch nanPolicy {
                    case .skip: continue
                    case .zero: (t, r, d) = (0, 0, 0)  // rho = 1: p_t = p_r, every binary estimator 0
                    case .reject: break  // NaN inputs give NaN; lt = lr = -inf gives 0 (SPEC §4.7)
                    }
                }
                counted[lane] = ~0
                (lt[lane], lr[lane], delta[lane]) = (Float(t), Float(r), d)
                (wideInputs.lt[lane], wideInputs.lr[lane]) = (t, r)
            }
            p &+= width
            guard anySet(counted) else { continue }
            let values = wide ? wideBinaryLanes(wideInputs.lt, wideInputs.lr, needs: needs, clamp: clamp)
                : binaryLanes(lt, lr, needs: needs, clamp: clamp, logLow: logLow, logHigh: logHigh)
            accumulate(values, counted, into: &stats)
            guard let bits else { continue }
            let clamped = delta.replacing(with: deltaClamp, where: delta .> deltaClamp)
                .replacing(with: -deltaClamp, where: delta .< -deltaClamp)
            for lane in 0..<width where counted[lane] != 0 {
                var keep: UInt8 = 1
                for (slot, band) in tokenBands where !band.band.contains(values.value(band.estimator)[lane]) {
                    rejected[slot] += 1  // NaN fails: fail closed
                    keep = 0
                }
                if let advantage {
                    let a = tokenAdvantages.map { $0.double(p &- width &+ lane) } ?? rowAdvantage
                    if advantage.masks(lt: lt[lane], lr: lr[lane], values: values, lane: lane, delta: clamped[lane], advantage: a,
                                       counts: rejected, base: advantageSlot) {
                        keep = 0
                    }
                }
                bits[p &- width &+ lane] = keep
            }
        }
        return stats
    }

    /// Adds the counted lanes' values to the row statistics.
    @inline(__always)
    private func accumulate(_ values: BinaryLanes, _ counted: LaneMask, into stats: inout BinaryRowStats) {
        stats.counted &+= laneCount(counted)
        for estimator in rowEstimators {
            let v = values.value(estimator)
            let slot = BinaryRowStats.slot(estimator)
            for lane in 0..<chunkWidth where counted[lane] != 0 {
                let output = v[lane]
                if output.isNaN {
                    stats.nan = true
                    continue
                }
                stats.sum[slot] += Double(output)
                if output > stats.max[slot] { stats.max[slot] = output }
                if output < stats.min[slot] { stats.min[slot] = output }
            }
        }
    }
}

/// `binaryLanes` for float64 inputs: every lane from the float64 formulas (the inputs' own values,
/// not their float32 roundings).
@inline(never)
func wideBinaryLanes(_ lt: SIMD8<Double>, _ lr: SIMD8<Double>, needs: BinaryNeeds, clamp: BinaryClamp) -> BinaryLanes {
    var out = BinaryLanes()
    for lane in 0..<chunkWidth {
        let t = lt[lane], r = lr[lane]
        if needs.contains(.difference) { out.difference[lane] = Float(binaryDifference(t, r)) }
        if needs.contains(.forward) { out.forward[lane] = Float(binaryValue(.bkl, lt: t, lr: r, clamp: clamp)) }
        if needs.contains(.backward) { out.backward[lane] = Float(binaryValue(.bklTR, lt: t, lr: r, clamp: clamp)) }
    }
    return out
}

extension FloatBand {
    /// `contains` for one value.
    @inline(__always)
    func contains(_ v: Float) -> Bool { v >= lo[0] && v <= hi[0] }
}

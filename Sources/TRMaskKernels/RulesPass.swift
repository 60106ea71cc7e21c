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

    /// One row's first `count` positions: the binary statistics, and in `bits[p]` whether a
    /// counted token passes every binary token criterion and the advantage rule (uncounted
    /// positions: anything; the scan's own validity decides them). Counts each token criterion's
    /// rejections, and the advantage rule's sides, in `rejected`.
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
        for p in 0..<n {
            if let mask, mask.float(p) == 0 { continue }
            var lt = Double.nan, lr = Double.nan, delta: Float
            if let secondary {  // the rounding rule of `trm_batch_t`
                (lt, lr) = (primary.double(p), secondary.double(p))
                delta = wide ? Float(lt - lr) : Float(lt) - Float(lr)
            } else {
                delta = primary.float(p)
            }
            if delta.isNaN {  // SPEC §4.5, as the row scan applies it
                switch nanPolicy {
                case .skip: continue
                case .zero: (lt, lr, delta) = (0, 0, 0)  // rho = 1: p_t = p_r, every binary estimator 0
                case .reject: break  // NaN inputs give NaN; lt = lr = -inf gives 0 (SPEC §4.7)
                }
            }
            stats.counted += 1
            for estimator in rowEstimators {
                let value = binaryValue(estimator, lt: lt, lr: lr, clamp: clamp)
                let slot = BinaryRowStats.slot(estimator)
                if value.isNaN {
                    stats.nan = true
                    continue
                }
                let output = Float(value)
                stats.sum[slot] += value
                if output > stats.max[slot] { stats.max[slot] = output }
                if output < stats.min[slot] { stats.min[slot] = output }
            }
            guard let bits else { continue }
            var keep: UInt8 = 1
            if let advantage {
                let a = tokenAdvantages.map { $0.double(p) } ?? rowAdvantage
                let d = delta > deltaClamp ? deltaClamp : (delta < -deltaClamp ? -deltaClamp : delta)
                if advantage.masks(lt: lt, lr: lr, delta: d, advantage: a, clamp: clamp, counts: rejected, base: advantageSlot) {
                    keep = 0
                }
            }
            for (slot, band) in tokenBands {
                let value = Float(binaryValue(band.estimator, lt: lt, lr: lr, clamp: clamp))
                if !band.band.contains(value) {  // NaN fails: fail closed
                    rejected[slot] += 1
                    keep = 0
                }
            }
            bits[p] = keep
        }
        return stats
    }
}

extension FloatBand {
    /// `contains` for one value.
    @inline(__always)
    func contains(_ v: Float) -> Bool { v >= lo[0] && v <= hi[0] }
}

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
        let reader = RulesChunkReader(batch, row: row, start: start, nanPolicy: nanPolicy)
        let tokenAdvantages = batch.advantages.map { RowCursor($0, row: row, start: start, layout: batch.layout) }
        let rowSign = Lanes(repeating: advantageSign(batch.rowAdvantages.map { loadDouble($0.address(row: 0, col: row), $0.dtype) } ?? .nan))
        let needs = self.needs
        let (logLow, logHigh) = clamp.lanes
        let limit = Lanes(repeating: deltaClamp)
        var p = 0
        while p < n {
            let width = Swift.min(chunkWidth, n - p)
            let chunk = (width == chunkWidth ? reader.plainChunk(at: p) : nil) ?? reader.chunk(at: p, count: width)
            if anySet(chunk.counted) {
                let values = chunk.wide.map { wideBinaryLanes($0.lt, $0.lr, needs: needs, clamp: clamp) }
                    ?? binaryLanes(chunk.lt, chunk.lr, needs: needs, clamp: clamp, logLow: logLow, logHigh: logHigh)
                if !rowEstimators.isEmpty { accumulate(values, chunk.counted, into: &stats) }
                if let bits {
                    var keep = chunk.counted
                    for (slot, band) in tokenBands {
                        let pass = band.band.contains(values.value(band.estimator))  // NaN fails: fail closed
                        let failed = chunk.counted & ~pass
                        if anySet(failed) { rejected[slot] += laneCount(failed) }
                        keep &= pass
                    }
                    if let advantage {
                        var sign = rowSign
                        if let tokenAdvantages {
                            for lane in 0..<width { sign[lane] = advantageSign(tokenAdvantages.double(p &+ lane)) }
                        }
                        let delta = lanewiseMin(lanewiseMax(chunk.delta, -limit), limit)
                        keep &= ~advantage.masked(values, lt: chunk.lt, lr: chunk.lr, delta: delta, sign: sign, counted: chunk.counted,
                                                  counts: rejected, base: advantageSlot)
                    }
                    for lane in 0..<width { bits[p &+ lane] = keep[lane] != 0 ? 1 : 0 }
                }
            }
            p &+= width
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

/// One chunk of the rules pass's inputs: the log-probs as float32 lanes (and as float64 for
/// float64 inputs), delta by the batch's rounding rule, and the counted lanes (valid, and not a
/// NaN delta under the skip policy; under the zero policy a NaN delta's lanes hold 0, 0, 0).
struct RulesChunk {
    var lt = Lanes(repeating: -1), lr = Lanes(repeating: -1), delta = Lanes()
    var counted = LaneMask()
    var wide: (lt: SIMD8<Double>, lr: SIMD8<Double>)?
}

/// Reads a row's chunks for the rules pass.
struct RulesChunkReader {
    let primary: RowCursor
    let secondary: RowCursor?
    let mask: RowCursor?
    let nanPolicy: NaNPolicy
    let wide: Bool
    /// float32 log-probs with unit column stride and a byte mask with unit stride or none.
    let unit: Bool

    init(_ batch: Batch, row: Int, start: Int, nanPolicy: NaNPolicy) {
        primary = RowCursor(batch.source.primary, row: row, start: start, layout: batch.layout)
        secondary = batch.source.secondary.map { RowCursor($0, row: row, start: start, layout: batch.layout) }
        mask = batch.mask.map { RowCursor($0, row: row, start: start, layout: batch.layout) }
        self.nanPolicy = nanPolicy
        wide = primary.dtype == .f64 || secondary?.dtype == .f64
        unit = secondary.map { $0.dtype == .f32 && $0.stride == 1 } == true && primary.dtype == .f32 && primary.stride == 1
            && mask.map { $0.dtype.isByteMask && $0.stride == 1 } ?? true
    }

    /// Eight positions by vector loads, or nil when the layout is not `unit` or a counted delta is
    /// NaN (the general `chunk` applies the NaN policy).
    @inline(__always)
    func plainChunk(at p: Int) -> RulesChunk? {
        guard unit, let secondary else { return nil }
        var chunk = RulesChunk()
        chunk.lt = primary.base.loadUnaligned(fromByteOffset: p &* 4, as: Lanes.self)
        chunk.lr = secondary.base.loadUnaligned(fromByteOffset: p &* 4, as: Lanes.self)
        chunk.delta = chunk.lt - chunk.lr
        if let mask {
            let bytes = mask.base.loadUnaligned(fromByteOffset: p, as: UInt64.self)
            for lane in 0..<chunkWidth where (bytes >> UInt64(8 &* lane)) & 0xff != 0 { chunk.counted[lane] = ~0 }
        } else {
            chunk.counted = LaneMask(repeating: ~0)
        }
        return anySet(chunk.counted & ~laneMask(chunk.delta .== chunk.delta)) ? nil : chunk
    }

    /// `count` positions (at most eight), one element at a time, any dtypes and strides.
    func chunk(at p: Int, count: Int) -> RulesChunk {
        var chunk = RulesChunk()
        var wideLt = SIMD8<Double>(repeating: -1), wideLr = SIMD8<Double>(repeating: -1)
        for lane in 0..<count {
            let q = p &+ lane
            if let mask, mask.float(q) == 0 { continue }
            var t = Double.nan, r = Double.nan, d: Float
            if let secondary {  // the rounding rule of `trm_batch_t`
                (t, r) = (primary.double(q), secondary.double(q))
                d = wide ? Float(t - r) : Float(t) - Float(r)
            } else {
                d = primary.float(q)  // a log-ratio (the advantage ratio rule only: validated)
            }
            if d.isNaN {  // SPEC §4.5, as the row scan applies it
                switch nanPolicy {
                case .skip: continue
                case .zero: (t, r, d) = (0, 0, 0)  // rho = 1: p_t = p_r, every binary estimator 0
                case .reject: break  // NaN inputs give NaN; lt = lr = -inf gives 0 (SPEC §4.7)
                }
            }
            chunk.counted[lane] = ~0
            (chunk.lt[lane], chunk.lr[lane], chunk.delta[lane]) = (Float(t), Float(r), d)
            (wideLt[lane], wideLr[lane]) = (t, r)
        }
        if wide { chunk.wide = (wideLt, wideLr) }
        return chunk
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

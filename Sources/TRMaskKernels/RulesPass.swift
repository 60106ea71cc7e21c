/// The 2026 token rules inside the mask's scan: the binary estimators of SPEC §4.7 (functions of
/// `logp_train` and `logp_roll` themselves, not of delta) as row statistics and token criteria,
/// and the advantage-conditioned token rule of SPEC §4.8. The row scan calls `RulesRow.judge` on
/// each chunk it reads (the chunk's bytes are then in L1: one pass over memory). A chunk whose
/// tokens `RulesShortcut` proves kept needs no exponential; the others get the exact float32
/// values of `binaryLanes` (those `token_values` gives), so decisions, counts and statistics are
/// those of the exact values.

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

/// What the 2026 rules of one call compute, decided once from the criteria and options.
struct RulesPass {
    /// Binary estimators whose row statistics a row criterion (or the metrics) needs.
    let rowEstimators: [Estimator]
    /// Binary token criteria: the slot of their rejection counter, the estimator, the bounds.
    let tokenBands: [(slot: Int, band: TokenBand)]
    /// The advantage token rule, and the first of its counters (after the criteria's).
    let advantage: AdvantageTokenRule?
    let advantageSlot: Int
    let clamp: BinaryClamp
    /// `clamp`'s bounds as float32 lanes.
    let logLow: Lanes, logHigh: Lanes
    /// The clamp of delta (`+inf` for none), for the ratio statistic.
    let deltaClamp: Float
    let nanPolicy: NaNPolicy
    /// The binary values the call reads.
    let needs: BinaryNeeds
    /// The cheap test of chunks that surely pass (nil: every chunk gets its exact values).
    private(set) var shortcut: RulesShortcut?

    /// nil when the call has no 2026 token rule and no binary row statistic.
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
        (logLow, logHigh) = clamp.lanes
        deltaClamp = options.clamp.isFinite ? Float(options.clamp) : .infinity
        nanPolicy = options.nanPolicy
        var needs = rule?.needs ?? []
        for estimator in rowEstimators { needs.formUnion(BinaryNeeds(estimator)) }
        for (_, band) in tokenBands { needs.formUnion(BinaryNeeds(band.estimator)) }
        self.needs = needs
        shortcut = RulesShortcut(self)
    }

    /// Whether the rules decide tokens (binary token criteria or the advantage token rule).
    var decidesTokens: Bool { !tokenBands.isEmpty || advantage != nil }

    /// The rules at one row.
    func row(_ batch: Batch, row: Int, start: Int) -> RulesRow { RulesRow(self, batch, row: row, start: start) }

    /// The exact rules on a chunk with counted lanes: the binary values, the row statistics, the
    /// token criteria's and the advantage rule's counts in `rejected`. Returns the counted lanes
    /// that pass every binary token criterion and the advantage rule (all of them when the call
    /// decides no tokens). Out of line: the scan's loop stays small.
    @inline(never)
    func exact(_ chunk: RulesChunk, wide: WideLogProbs? = nil, sign: Lanes, stats: inout BinaryRowStats,
               rejected: UnsafeMutableBufferPointer<Int>) -> LaneMask {
        let values = wide.map { wideBinaryLanes($0.lt, $0.lr, needs: needs, clamp: clamp) }
            ?? binaryLanes(chunk.lt, chunk.lr, needs: needs, clamp: clamp, logLow: logLow, logHigh: logHigh)
        if !rowEstimators.isEmpty { accumulate(values, chunk.counted, into: &stats) }
        var keep = chunk.counted
        guard decidesTokens else { return keep }
        for (slot, band) in tokenBands {
            let pass = band.band.contains(values.value(band.estimator))  // NaN fails: fail closed
            let failed = chunk.counted & ~pass
            if anySet(failed) { rejected[slot] += laneCount(failed) }
            keep &= pass
        }
        if let advantage {
            keep &= ~advantage.masked(values, lt: chunk.lt, lr: chunk.lr, delta: clamped(chunk.delta, deltaClamp), sign: sign,
                                      counted: chunk.counted, counts: rejected, base: advantageSlot)
        }
        return keep
    }

    /// Adds the counted lanes' values to the row statistics, in position order (the float64 sums
    /// are the same for every layout and thread count).
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

/// The rules at one row: its chunk reader, its advantages.
struct RulesRow {
    let rules: RulesPass
    let reader: RulesChunkReader
    /// Per-token advantages, when the batch has them.
    let advantages: RowCursor?
    /// Float32 advantages at unit stride: vector loads.
    let unitAdvantages: Bool
    /// The row's advantage sign (per-row advantages; NaN when there are none).
    let rowSign: Lanes

    init(_ rules: RulesPass, _ batch: Batch, row: Int, start: Int) {
        self.rules = rules
        reader = RulesChunkReader(batch, row: row, start: start, nanPolicy: rules.nanPolicy)
        advantages = batch.advantages.map { RowCursor($0, row: row, start: start, layout: batch.layout) }
        unitAdvantages = advantages.map { $0.dtype == .f32 && $0.stride == 1 } ?? false
        rowSign = Lanes(repeating: advantageSign(batch.rowAdvantages.map { loadDouble($0.address(row: 0, col: row), $0.dtype) } ?? .nan))
    }

    /// The rules on positions `p ..< p + width` (`width` <= 8): the lanes that pass (every lane
    /// that is not counted passes; the scan's own validity decides it), with the binary
    /// statistics and the counts updated.
    @inline(__always)
    func judge(at p: Int, width: Int, stats: inout BinaryRowStats, rejected: UnsafeMutableBufferPointer<Int>) -> LaneMask {
        var chunk: RulesChunk, wide: WideLogProbs? = nil
        if width == chunkWidth, let plain = reader.plainChunk(at: p) {
            chunk = plain
        } else {
            (chunk, wide) = reader.chunk(at: p, count: width)
        }
        guard anySet(chunk.counted) else { return LaneMask(repeating: ~0) }
        let sign = rules.advantage == nil ? rowSign : signs(at: p, width: width)
        if let shortcut = rules.shortcut, wide == nil, !anySet(chunk.counted & ~shortcut.keeps(chunk, sign: sign)) {
            return LaneMask(repeating: ~0)
        }
        return rules.exact(chunk, wide: wide, sign: sign, stats: &stats, rejected: rejected) | ~chunk.counted
    }

    /// The advantages' signs at positions `p ..< p + width` (1, -1, 0 or NaN; exact for float64
    /// advantages however small), or the row's.
    @inline(__always)
    func signs(at p: Int, width: Int) -> Lanes {
        guard let advantages else { return rowSign }
        if unitAdvantages && width == chunkWidth {  // a float32 has the sign of its float64 value
            let a = advantages.base.loadUnaligned(fromByteOffset: p &* 4, as: Lanes.self)
            var sign = Lanes(repeating: .nan)
            sign = select(laneMask(a .== 0), Lanes(), sign)
            sign = select(laneMask(a .> 0), Lanes(repeating: 1), sign)
            return select(laneMask(a .< 0), Lanes(repeating: -1), sign)
        }
        var sign = rowSign
        for lane in 0..<width { sign[lane] = advantageSign(advantages.double(p &+ lane)) }
        return sign
    }
}

/// A sufficient test that a token passes every binary token criterion and the advantage rule of
/// a call, cheaper than the values (no exponential, no division). With `u = m - l` the clamped
/// log-probs' difference (`l = ln a`, `m = ln b`, `a = p_r`, `b = p_t`):
/// - `|p_t - p_r| = e^top (1 - e^-|delta|) <= e^top |delta|`, `top = max(lt, lr)`: `|delta|` when
///   both log-probs are `<= 0`, `1.07 |delta|` when `top <= 1/16` (a probability just above 1
///   where one token's log-prob rounds above 0);
/// - `bkl = KL_B(a || b) <= chi2 = (a - b)^2 / (b (1 - b)) <= u^2 e^(2|u|) / |m|` (KL is below
///   chi-square; `|a - b| = b |e^-u - 1| <= b |u| e^|u|`, `1 - b >= b |m|`), and `bkl_tr` the same
///   with `|l|`; so every binary KL is `<= u^2 e^(2|u|) / min(|l|, |m|)`.
/// The test asks these bounds to clear each threshold with room for every rounding: `|u|` taken
/// `1e-6` larger (the float32 subtraction and clamp bounds against the float64 ones), `|u| <= 1/16`
/// so `e^(2|u|) < 1.14`, and 1 % and 1e-11 off each KL threshold (the float32 values are within
/// 1e-5 relative, the float64 ones closer). A token it passes has exact values that pass too, so the decision is the exact one;
/// a token it does not pass is decided on its exact values. NaN fails every comparison here.
struct RulesShortcut {
    /// The bound `b` of `|D|` must satisfy `-b >= differenceLow` and `b <= differenceHigh`.
    let differenceLow: Lanes, differenceHigh: Lanes
    let testsDifference: Bool
    /// The KL bound clears every KL threshold when `(|u| + 1e-6)^2 <= klScale * min(|l|, |m|)`.
    let klScale: Lanes
    let testsKL: Bool
    /// The advantage ratio rule: kept for sure when `lower <= delta <= upper` (exact, not a bound).
    let ratio: (lower: Lanes, upper: Lanes)?
    /// The binary clamp's bounds and the clamp of delta (`RulesPass`), as lanes.
    let logLow: Lanes, logHigh: Lanes, deltaClamp: Float
    /// An advantage rule: a NaN advantage masks its token.
    let testsSign: Bool

    /// nil when some rule has a lower bound the test cannot prove (a positive lower bound on
    /// `btv`, a finite lower bound on a KL) or the call needs every value (row statistics).
    init?(_ rules: RulesPass) {
        guard rules.rowEstimators.isEmpty else { return nil }
        var low: Float = -.infinity, high: Float = .infinity, klLimit: Float = .infinity
        var (difference, kl) = (false, false)
        for (_, band) in rules.tokenBands {
            let (lo, hi) = (band.band.lo[0], band.band.hi[0])
            switch band.estimator {
            case .bdiff:
                (low, high, difference) = (Swift.max(low, lo), Swift.min(high, hi), true)
            case .btv:
                guard lo <= 0 else { return nil }  // |D| >= 0 always holds
                (high, difference) = (Swift.min(high, hi), true)
            default:
                guard lo == -.infinity else { return nil }
                (klLimit, kl) = (Swift.min(klLimit, hi), true)
            }
        }
        var ratio: (lower: Lanes, upper: Lanes)?
        if let advantage = rules.advantage {
            switch advantage.statistic {
            case .bdiff:  // masked only when D > upper or D < lower
                (low, high, difference) = (Swift.max(low, advantage.lower[0]), Swift.min(high, advantage.upper[0]), true)
            case .bkl:  // masked only when bkl > upper or bkl > lower
                (klLimit, kl) = (Swift.min(klLimit, Swift.min(advantage.upper[0], advantage.lower[0])), true)
            case .ratio, .none:
                ratio = (advantage.lower, advantage.upper)
            }
        }
        differenceLow = Lanes(repeating: low)
        differenceHigh = Lanes(repeating: high)
        testsDifference = difference
        // 1e-11 off for the values' absolute error (SPEC §4.7 allows 1e-12): a threshold that
        // small is never passed here.
        klScale = Lanes(repeating: Float(0.99 / 1.14 * (Double(klLimit) - 1e-11)).nextDown)
        testsKL = kl
        self.ratio = ratio
        (logLow, logHigh, deltaClamp) = (rules.logLow, rules.logHigh, rules.deltaClamp)
        testsSign = rules.advantage != nil
    }

    /// The lanes of a float32 chunk (not float64 inputs) the rules surely keep. Inlined (a call
    /// here spills the chunk and copies the shortcut on every chunk).
    @inline(always)
    func keeps(_ chunk: RulesChunk, sign: Lanes) -> LaneMask {
        var sure = LaneMask(repeating: ~0)
        let slack = Lanes(repeating: 1e-6)
        if testsDifference {
            let top = lanewiseMax(chunk.lt, chunk.lr)
            let factor = select(laneMask(top .<= Lanes()), Lanes(repeating: 1.0001), Lanes(repeating: 1.07))  // e^(1/16) < 1.07
            let bound = absolute(chunk.lt - chunk.lr) * factor + slack
            sure &= laneMask(top .<= Lanes(repeating: 0.0625)) & laneMask(bound .<= differenceHigh) & laneMask(-bound .>= differenceLow)
        }
        if testsKL {
            let m = lanewiseMin(lanewiseMax(chunk.lt, logLow), logHigh)
            let l = lanewiseMin(lanewiseMax(chunk.lr, logLow), logHigh)
            let u = absolute(m - l)
            let t = u + slack
            sure &= laneMask(u .<= Lanes(repeating: 0.0625)) & laneMask(t * t .<= klScale * lanewiseMin(-l, -m))
        }
        if let ratio {
            let delta = clamped(chunk.delta, deltaClamp)
            sure &= laneMask(delta .<= ratio.upper) & laneMask(delta .>= ratio.lower)
        }
        if testsSign { sure &= laneMask(sign .== sign) }  // a NaN advantage masks its token
        return sure
    }
}

/// One chunk of the rules' inputs: the log-probs as float32 lanes, delta by the batch's rounding
/// rule, and the counted lanes (valid, and not a NaN delta under the skip policy; under the zero
/// policy a NaN delta's lanes hold 0, 0, 0). Float64 inputs come with a `WideLogProbs` beside.
struct RulesChunk {
    var lt = Lanes(repeating: -1), lr = Lanes(repeating: -1), delta = Lanes()
    var counted = LaneMask()
    /// `plainChunk`: the eight mask bytes, each 0 or 1 (`keepBytes(counted)`, read from the mask).
    var countedBytes: UInt64 = 0
}

/// The float64 log-probs of a chunk of float64 inputs.
typealias WideLogProbs = (lt: SIMD8<Double>, lr: SIMD8<Double>)

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
    @inline(always)
    func plainChunk(at p: Int) -> RulesChunk? {
        guard unit, let secondary else { return nil }
        let lt = primary.base.loadUnaligned(fromByteOffset: p &* 4, as: Lanes.self)
        let lr = secondary.base.loadUnaligned(fromByteOffset: p &* 4, as: Lanes.self)
        let delta = lt - lr
        let bytes = mask.map { $0.base.loadUnaligned(fromByteOffset: p, as: SIMD8<UInt8>.self) } ?? SIMD8(repeating: 1)
        let counted = byteMask(bytes)
        if anySet(counted & ~laneMask(delta .== delta)) { return nil }
        return RulesChunk(lt: lt, lr: lr, delta: delta, counted: counted, countedBytes: nonzeroBytes(unsafeBitCast(bytes, to: UInt64.self)))
    }

    /// Asks the caches for the group of `GroupSums.width` positions at `p` of a `unit` row (a
    /// hint: addresses past the row are harmless).
    @inline(__always)
    func prefetchGroup(at p: Int) {
        prefetchLines(primary.base + p &* 4, bytes: GroupSums.width &* 4)
        if let secondary { prefetchLines(secondary.base + p &* 4, bytes: GroupSums.width &* 4) }
        if let mask { prefetchLines(mask.base + p, bytes: GroupSums.width) }
    }

    /// `count` positions (at most eight), one element at a time, any dtypes and strides.
    func chunk(at p: Int, count: Int) -> (chunk: RulesChunk, wide: WideLogProbs?) {
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
        return (chunk, wide ? (wideLt, wideLr) : nil)
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

extension MaskScan {
    /// The hot loop of a row with 2026 token rules, over whole groups up to `end` (a group
    /// boundary), for rows whose log-probs are float32 at unit stride with a byte mask at unit
    /// stride or none (`RulesChunkReader.unit`) and calls whose token criteria are all binary
    /// (`rulesLoopServes`): while each chunk is small (`LaneStats.isSmall`, no NaN), it adds the
    /// chunk exactly as `LaneStats.add` does, judges its tokens (`RulesShortcut`, and the exact
    /// values where that proves nothing), writes their token bits and counts the passing ones, as
    /// `judgeTokens` would. It stops at `end` or before the first other chunk, which the row loop
    /// takes. Reads each chunk once (its delta is the reader's: `lt - lr` in float32).
    @inline(never)
    func rulesChunks<Shape: ScanShape>(_ rules: RulesRow, _ shortcut: RulesShortcut, from start: Int, to end: Int,
                                       tokens: UnsafeMutablePointer<UInt8>?, rejected: UnsafeMutableBufferPointer<Int>,
                                       _ state: (LaneStats, GroupSums), _ shape: Shape.Type)
        -> (lanes: LaneStats, group: GroupSums, position: Int, passing: Int) {
        var (lanes, group) = state
        let plan = self.plan
        var passing = Lanes()  // per lane at most `LaneStats.blockLength` / 8 tokens: exact
        var unused = BinaryRowStats()  // the shortcut serves only calls without binary row statistics
        let tokenSigns = rules.advantages != nil
        var p = start
        while p < end {
            guard let chunk = rules.reader.plainChunk(at: p), LaneStats.isSmall(chunk.delta, chunk.counted, plan: plan) else { break }
            let sign = tokenSigns ? rules.signs(at: p, width: chunkWidth) : rules.rowSign
            var (keep, bytes) = (chunk.counted, chunk.countedBytes)
            if anySet(chunk.counted & ~shortcut.keeps(chunk, sign: sign)) {
                keep = rules.rules.exact(chunk, sign: sign, stats: &unused, rejected: rejected)
                bytes = keepBytes(keep)
            }
            lanes.accumulate(ChunkTerms(small: chunk.delta, valid: chunk.counted), plan: plan, group: &group, allSmall: true, Shape.self)
            passing += ones(keep)
            if let tokens { UnsafeMutableRawPointer(tokens).storeBytes(of: bytes, toByteOffset: p, as: UInt64.self) }
            p &+= chunkWidth
            if p & (GroupSums.width - 1) == 0 {
                lanes.flush(group, plan: plan, Shape.self)
                group = GroupSums()
                rules.reader.prefetchGroup(at: p &+ prefetchDistance)
            }
        }
        return (lanes, group, p, Int(passing.sum()))
    }

    /// Whether `rulesChunks` serves a row: see there; `tokens` (the keep-token row) at unit stride.
    func rulesLoopServes(_ rules: RulesRow?, tokens: GridRow<UInt8>?) -> Bool {
        guard let rules, rules.rules.shortcut != nil, rules.reader.unit else { return false }
        return tokenBands.allSatisfy { $0.estimator.isBinary } && (tokens?.stride ?? 1) == 1
    }
}

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

    /// The exact rules on a chunk of float32 inputs with counted lanes: the binary values (those
    /// `token_values` gives), then `decide`. Out of line: the scan's loop stays small.
    @inline(never)
    func exact(_ chunk: RulesChunk, sign: Lanes, stats: inout BinaryRowStats, rejected: UnsafeMutableBufferPointer<Int>) -> LaneMask {
        let values = binaryLanes(chunk.lt, chunk.lr, needs: needs, clamp: clamp, logLow: logLow, logHigh: logHigh)
        return decide(values, chunk, sign: sign, stats: &stats, rejected: rejected)
    }

    /// `exact` for a chunk of float64 inputs: every value from the float64 formulas of the inputs
    /// themselves, not of their float32 roundings.
    @inline(never)
    func exact(_ chunk: RulesChunk, wide: WideLogProbs, sign: Lanes, stats: inout BinaryRowStats,
               rejected: UnsafeMutableBufferPointer<Int>) -> LaneMask {
        decide(wideBinaryLanes(wide.lt, wide.lr, needs: needs, clamp: clamp), chunk, sign: sign, stats: &stats, rejected: rejected)
    }

    /// The row statistics, the token criteria's and the advantage rule's counts in `rejected`,
    /// from a chunk's binary values. Returns the counted lanes that pass every binary token
    /// criterion and the advantage rule (all of them when the call decides no tokens).
    @inline(__always)
    private func decide(_ values: BinaryLanes, _ chunk: RulesChunk, sign: Lanes, stats: inout BinaryRowStats,
                        rejected: UnsafeMutableBufferPointer<Int>) -> LaneMask {
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
        if let wide { return rules.exact(chunk, wide: wide, sign: sign, stats: &stats, rejected: rejected) | ~chunk.counted }
        if let shortcut = rules.shortcut, !anySet(chunk.counted & ~shortcut.keeps(chunk, sign: sign)) {
            return LaneMask(repeating: ~0)
        }
        return rules.exact(chunk, sign: sign, stats: &stats, rejected: rejected) | ~chunk.counted
    }

    /// The exact rules on a chunk of float32 inputs `RulesShortcut` does not decide, for
    /// `MaskScan.rulesChunks` (which serves only calls without binary row statistics). Out of
    /// line: the fast loop stays small.
    @inline(never)
    func exactChunk(_ chunk: RulesChunk, sign: Lanes, rejected: UnsafeMutableBufferPointer<Int>) -> LaneMask {
        var unused = BinaryRowStats()
        return rules.exact(chunk, sign: sign, stats: &unused, rejected: rejected)
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
/// a call, cheaper than the values (no exponential, no logarithm, no division). With `l = ln a`,
/// `m = ln b` the clamped log-probs (`a = p_r`, `b = p_t`), `u = m - l`, `top = max(lt, lr)`,
/// and `|u| <= |delta|` (the clamp is monotone and 1-Lipschitz):
/// - `|p_t - p_r| = e^top (1 - e^-|delta|) <= e^top |delta|`: `|delta|` when both log-probs are
///   `<= 0`, `1.07 |delta|` when `top <= 1/16` (a probability just above 1 where one token's
///   log-prob rounds above 0);
/// - far from 1 (`chiSquareKeeps`): `bkl = KL_B(a || b) <= chi2 = (a - b)^2 / (b (1 - b)) <=
///   u^2 e^(2|u|) / |m|` (KL is below chi-square; `|a - b| = b |e^-u - 1| <= b |u| e^|u|`,
///   `1 - b >= b |m|`), and `bkl_tr` the same with `|l|`; so every binary KL is
///   `<= delta^2 e^(2|delta|) / -clamp(top)`;
/// - near 1 (`nearOneKeeps`, where `-clamp(top)` is too small for the above): with `x = 1 - a`,
///   `y = 1 - b`, `KL_B(a || b) = a (l - m) + x ln(x / y)`, and only one of the two terms is
///   positive (`l > m` iff `x < y`). The first is `<= |u|`; the second, when `x > y`, is
///   `<= s ln(s / y)` with `s = -clamp(min(lt, lr)) >= x` (`1 - e^l <= -l`) and
///   `y = 1 - e^clamp(top) >= -clamp(top) e^clamp(top)`; with `E(v) = floor(log2 v)`,
///   `ln(s / y) <= ln 2 (E(s) + 1 - E(-clamp(top))) + -clamp(top)`. `bkl_tr` swaps the roles.
/// The test asks these bounds to clear each threshold with room for every rounding: `|delta|`
/// taken `1e-6` larger (the float32 subtraction and clamp bounds against the float64 ones),
/// `|delta| <= 1/16` in the chi-square bound so `e^(2|u|) < 1.14`, the exponents read from values
/// nudged by 2^-20 outwards, and 1 % and 1e-11 off each KL threshold (the float32 values are
/// within 1e-5 relative, the float64 ones closer). A token it passes has exact values that pass
/// too, so the decision is the exact one; a token it does not pass is decided on its exact
/// values. NaN fails every comparison here.
struct RulesShortcut {
    /// The bound `b` of `|D|` must satisfy `-b >= differenceLow` and `b <= differenceHigh`.
    let differenceLow: Lanes, differenceHigh: Lanes
    let testsDifference: Bool
    /// A bound on every binary KL clears every KL threshold when it is `<= klRoom`, and the
    /// chi-square bound when `(|delta| + 1e-6)^2 <= klScale * -clamp(top)`.
    let klRoom: Lanes, klScale: Lanes
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
        let room = 0.99 * (Double(klLimit) - 1e-11)
        klRoom = Lanes(repeating: Float(room).nextDown)
        klScale = Lanes(repeating: Float(room / 1.14).nextDown)
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
        let distance = absolute(chunk.delta)
        let top = lanewiseMax(chunk.lt, chunk.lr)
        if testsDifference {
            let factor = select(laneMask(top .<= Lanes()), Lanes(repeating: 1.0001), Lanes(repeating: 1.07))  // e^(1/16) < 1.07
            let bound = distance * factor + slack
            sure &= laneMask(top .<= Lanes(repeating: 0.0625)) & laneMask(bound .<= differenceHigh) & laneMask(-bound .>= differenceLow)
        }
        if testsKL {
            let t = distance + slack
            let headroom = -lanewiseMin(lanewiseMax(top, logLow), logHigh)  // -clamp(top) = min(|l|, |m|)
            var kl = chiSquareKeeps(t, distance: distance, headroom: headroom)
            if anySet(chunk.counted & ~kl) { kl |= nearOneKeeps(t, chunk, headroom: headroom) }
            sure &= kl
        }
        if let ratio {
            let delta = clamped(chunk.delta, deltaClamp)
            sure &= laneMask(delta .<= ratio.upper) & laneMask(delta .>= ratio.lower)
        }
        if testsSign { sure &= laneMask(sign .== sign) }  // a NaN advantage masks its token
        return sure
    }

    /// The chi-square bound (see the type): `t = |delta| + 1e-6`, `headroom = -clamp(top)`.
    @inline(always)
    func chiSquareKeeps(_ t: Lanes, distance: Lanes, headroom: Lanes) -> LaneMask {
        laneMask(distance .<= Lanes(repeating: 0.0625)) & laneMask(t * t .<= klScale * headroom)
    }

    /// The bound near probability 1 (see the type), from exponent bits: no exponential, no
    /// logarithm. `t = |delta| + 1e-6`, `headroom = -clamp(top)`, which must be a normal float
    /// (at 0 the KL is infinite; below, its exponent bits are not `E`).
    @inline(always)
    func nearOneKeeps(_ t: Lanes, _ chunk: RulesChunk, headroom: Lanes) -> LaneMask {
        let spread = -lanewiseMin(lanewiseMax(lanewiseMin(chunk.lt, chunk.lr), logLow), logHigh)  // s = -clamp(bottom)
        // E(s) from s nudged up, E(headroom) from headroom nudged down: each exponent bounds the
        // float64 clamp's value too. The biases cancel in the difference.
        let exponents = exponentField(spread * Lanes(repeating: 1 + 0x1p-20)) - exponentField(headroom * Lanes(repeating: 1 - 0x1p-20))
        let logRatio = headroom.addingProduct(exponents + 1, Lanes(repeating: Float(0.693_147_180_559_945_3 as Double).nextUp))  // >= ln 2
        let bound = spread * logRatio
        return laneMask(headroom .>= Lanes(repeating: Float.leastNormalMagnitude)) & laneMask(t .<= klRoom) & laneMask(bound .<= klRoom)
    }
}

/// The biased exponent field of positive float lanes, as floats (exact: at most 255).
@inline(__always)
func exponentField(_ x: Lanes) -> Lanes {
    // 2^23 + field as a float: the field lands in the low mantissa bits.
    Lanes(bitPattern: (x.bitPattern &>> 23) | LaneMask(repeating: 0x4b00_0000)) - Lanes(repeating: 8_388_608)
}

/// One chunk of the rules' inputs: the log-probs as float32 lanes, delta by the batch's rounding
/// rule, and the counted lanes (valid, and not a NaN delta under the skip policy; under the zero
/// policy a NaN delta's lanes hold 0, 0, 0). Float64 inputs come with a `WideLogProbs` beside.
struct RulesChunk {
    var lt = Lanes(repeating: -1), lr = Lanes(repeating: -1), delta = Lanes()
    var counted = LaneMask()
}

/// A `unit` row's pointers (`RulesChunkReader.unit`), taken once: the hot loop's reads.
struct UnitRulesRow {
    let lt: UnsafeRawPointer, lr: UnsafeRawPointer
    /// Bytes, nonzero = counted; nil: every position counted.
    let mask: UnsafeRawPointer?

    /// Eight positions by vector loads, delta `lt - lr` in float32 (the batch's rounding rule for
    /// float32 inputs). A counted lane may hold a NaN delta: the caller decides what it does.
    @inline(always)
    func chunk(at p: Int) -> RulesChunk {
        let lt = self.lt.loadUnaligned(fromByteOffset: p &* 4, as: Lanes.self)
        let lr = self.lr.loadUnaligned(fromByteOffset: p &* 4, as: Lanes.self)
        let counted = mask.map { byteMask($0.loadUnaligned(fromByteOffset: p, as: SIMD8<UInt8>.self)) } ?? LaneMask(repeating: ~0)
        return RulesChunk(lt: lt, lr: lr, delta: lt - lr, counted: counted)
    }
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

    /// The row's pointers when it is `unit`.
    @inline(__always)
    var unitRow: UnitRulesRow? {
        guard unit, let secondary else { return nil }
        return UnitRulesRow(lt: primary.base, lr: secondary.base, mask: mask?.base)
    }

    /// Eight positions by vector loads, or nil when the layout is not `unit` or a counted delta is
    /// NaN (the general `chunk` applies the NaN policy).
    @inline(always)
    func plainChunk(at p: Int) -> RulesChunk? {
        guard let chunk = unitRow?.chunk(at: p), !anySet(chunk.counted & ~laneMask(chunk.delta .== chunk.delta)) else { return nil }
        return chunk
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
        let row = rules.reader.unitRow.unsafelyUnwrapped  // `rulesLoopServes`: a unit row
        let tokenBytes = tokens.map { UnsafeMutableRawPointer($0) }
        let tokenSigns = rules.advantages != nil
        // Passing tokens: the counted ones (the lane counters' growth) less those the exact
        // values reject. Per lane at most `LaneStats.blockLength` / 8 tokens: exact in float32.
        let countedBefore = lanes.counted
        var rejectedLanes = Lanes()
        var p = start
        while p < end {
            let chunk = row.chunk(at: p)
            // A counted NaN delta is not small: the row loop applies the NaN policy to its chunk.
            guard LaneStats.isSmall(chunk.delta, chunk.counted, plan: plan) else { break }
            let sign = tokenSigns ? rules.signs(at: p, width: chunkWidth) : rules.rowSign
            var keep = chunk.counted
            if anySet(chunk.counted & ~shortcut.keeps(chunk, sign: sign)) {
                keep = rules.exactChunk(chunk, sign: sign, rejected: rejected)
                rejectedLanes += ones(chunk.counted & ~keep)
            }
            lanes.accumulate(ChunkTerms(small: chunk.delta, valid: chunk.counted), plan: plan, group: &group, allSmall: true, Shape.self)
            tokenBytes?.storeBytes(of: keepBytes(keep), toByteOffset: p, as: UInt64.self)
            p &+= chunkWidth
            if p & (GroupSums.width - 1) == 0 {
                lanes.flush(group, plan: plan, Shape.self)
                group = GroupSums()
                rules.reader.prefetchGroup(at: p &+ prefetchDistance)
            }
        }
        return (lanes, group, p, Int((lanes.counted - countedBefore - rejectedLanes).sum()))
    }

    /// Whether `rulesChunks` serves a row: see there; `tokens` (the keep-token row) at unit stride.
    func rulesLoopServes(_ rules: RulesRow?, tokens: GridRow<UInt8>?) -> Bool {
        guard let rules, rules.rules.shortcut != nil, rules.reader.unit else { return false }
        return tokenBands.allSatisfy { $0.estimator.isBinary } && (tokens?.stride ?? 1) == 1
    }
}

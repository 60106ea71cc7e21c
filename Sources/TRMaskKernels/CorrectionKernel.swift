/// Rollout correction in verl's arithmetic (header: trm_rollout_correction; SPEC §8, §8.1). The
/// common float32 call takes the chunk pass (`CorrectionChunks`); every other call the element
/// pass here: each row is widened once into per-worker scratch (log-ratio, m, exp(clamp(delta)) in
/// float64), then passes over the scratch give the row's sums (by lane, `CorrectionLanes`), each
/// rejection option's statistics and verdicts, the output mask and the weights; per-row records
/// are reduced in row order (`CorrectionStatistics.swift`).

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Validates every argument, then computes. Returns `.ok` with every requested output written, or
/// the first problem found with nothing written. `rowRecords`: where to write the row records the
/// statistics are reduced from (`CorrectionRows.swift`); nil = not wanted.
public func rolloutCorrection(_ batch: Batch, config: CorrectionConfig, outputs: CorrectionOutputs,
                              rowRecords: CorrectionRowsBuffer? = nil) -> Status {
    let status = validateCorrection(batch, config: config, outputs: outputs, rowRecords: rowRecords)
    guard status == .ok else { return status }
    switch config.computeDType {
    case .f64: CorrectionScan<RoundF64>(batch, config, outputs).run(rowRecords: rowRecords)
    case .bf16: CorrectionScan<RoundBF16>(batch, config, outputs).run(rowRecords: rowRecords)
    case .f16: CorrectionScan<RoundF16>(batch, config, outputs).run(rowRecords: rowRecords)
    default: CorrectionScan<RoundF32>(batch, config, outputs).run(rowRecords: rowRecords)
    }
    return .ok
}

/// Divides every weight inside the rows of a token grid by `divisor`, in place, in the weights'
/// dtype. `offsets`: the packed layout's row offsets.
public func divideWeights(layout: Layout, rows: Int, cols: Int, offsets: StridedView?, divisor: Double, weights: TypedOut) -> Status {
    guard weights.dtype.isFloat else { return .badDType }
    // The weights are also the input the grid checks read: a batch whose values are the weights.
    let batch = Batch(layout: layout, rows: rows, cols: cols,
                      source: .values(StridedView(base: weights.base.map(UnsafeRawPointer.init), dtype: weights.dtype,
                                                  rowStride: weights.rowStride, colStride: weights.colStride)),
                      offsets: offsets)
    let status = validateDivide(batch, divisor: divisor, weights: weights)
    guard status == .ok else { return status }
    // NULL weights pass validation only with an empty grid (rows of no positions): nothing to divide.
    if weights.base != nil { scaleWeights(batch, divisor: divisor, weights: weights, threads: 0) }
    return .ok
}

/// The division of `divideWeights`, for validated arguments.
func scaleWeights(_ batch: Batch, divisor: Double, weights: TypedOut, threads: Int) {
    let divisor = rounded(divisor, to: weights.dtype)
    let dtype = weights.dtype
    forEachRowBlock(rows: batch.rows, workers: workerCount(threads: threads, rows: batch.rows, positions: batch.gridCount)) { _, rows in
        for row in rows {
            let grid = TypedGrid(weights, row: row, start: batch.rowSpan(row).start, layout: batch.layout)
            for p in 0..<batch.rowSpan(row).count {
                let address = grid.address(p)
                storeFloat(rounded(loadDouble(UnsafeRawPointer(address), dtype) / divisor, to: dtype), at: address, dtype)
            }
        }
    }
}

/// One row of a typed token-grid output.
struct TypedGrid {
    let base: UnsafeMutableRawPointer
    let stride: Int

    init(_ out: TypedOut, row: Int, start: Int, layout: Layout) {
        let origin = layout == .padded ? row &* out.rowStride : start &* out.colStride
        base = out.base.unsafelyUnwrapped + origin &* out.dtype.size
        stride = out.colStride &* out.dtype.size
    }

    @inline(__always)
    func address(_ p: Int) -> UnsafeMutableRawPointer { base + p &* stride }
}

/// A rejection option prepared for one call: bounds rounded to the dtype of its statistic.
struct PreparedRejection {
    let rejection: Rejection
    let lo: Double
    let hi: Double
    /// The lower end of the clamp before the std: `lo`, or 0 without one (verl).
    let stdLo: Double

    init(_ rejection: Rejection, statisticDType: DType) {
        self.rejection = rejection
        lo = rounded(rejection.lo, to: statisticDType)
        hi = rounded(rejection.hi, to: statisticDType)
        stdLo = rejection.lo.isFinite ? lo : 0
    }

    @inline(__always)
    func passes(_ value: Double) -> Bool { lo <= value && value <= hi }  // false for NaN

}

/// How `widenRow` reads a row: the first stream (log-probs of the trainer, or the log-ratio), the
/// rollout's log-probs when `paired`, and `m`.
protocol RowLoad {
    var paired: Bool { get }
    func train(_ p: Int) -> Double
    func roll(_ p: Int) -> Double
    func mass(_ p: Int, weights: Bool) -> Double
}

/// Contiguous float32 streams with a mask read by `Mask`.
struct ContiguousLoad<Mask: MaskLoad>: RowLoad {
    let train: UnsafePointer<Float>
    let roll: UnsafePointer<Float>?
    let mask: UnsafeRawPointer?

    var paired: Bool { roll != nil }
    @inline(__always) func train(_ p: Int) -> Double { Double(train[p]) }
    @inline(__always) func roll(_ p: Int) -> Double { Double(roll.unsafelyUnwrapped[p]) }
    @inline(__always) func mass(_ p: Int, weights: Bool) -> Double { Mask.mass(mask, p, weights: weights) }
}

/// Any layout and dtype, element by element.
struct CursorLoad: RowLoad {
    let primary: RowCursor
    let secondary: RowCursor?
    let mask: RowCursor?

    var paired: Bool { secondary != nil }
    @inline(__always) func train(_ p: Int) -> Double { primary.double(p) }
    @inline(__always) func roll(_ p: Int) -> Double { secondary.unsafelyUnwrapped.double(p) }

    /// The element's value (`weights`; bool as 0/1) or 1 where it is nonzero.
    @inline(__always) func mass(_ p: Int, weights: Bool) -> Double {
        guard let mask else { return 1 }
        let address = mask.address(p)
        let value: Double
        switch mask.dtype {
        case .u8, .bool: value = Double(address.load(as: UInt8.self))
        case .i32: value = Double(address.loadUnaligned(as: Int32.self))
        case .i64: value = Double(address.loadUnaligned(as: Int64.self))
        default: value = loadDouble(address, mask.dtype)
        }
        return weights ? value : (value != 0 ? 1 : 0)
    }
}

/// How the contiguous loops read `m`: no mask (1), bytes (bool or uint8), float32, int32 or
/// int64 (exact as float64 up to 2^53, as `CursorLoad` reads them).
protocol MaskLoad {
    static func mass(_ base: UnsafeRawPointer?, _ p: Int, weights: Bool) -> Double
    /// The `mass` of positions `p ..< p + 8`.
    static func masses(_ base: UnsafeRawPointer?, _ p: Int, weights: Bool) -> WideLanes
}

enum NoMaskLoad: MaskLoad {
    @inline(__always) static func mass(_ base: UnsafeRawPointer?, _ p: Int, weights: Bool) -> Double { 1 }
    @inline(__always) static func masses(_ base: UnsafeRawPointer?, _ p: Int, weights: Bool) -> WideLanes { WideLanes(repeating: 1) }
}

/// The mask's values (`weights`) or 1 where they are nonzero (NaN counts).
@inline(__always)
private func maskMasses(_ values: WideLanes, weights: Bool) -> WideLanes {
    weights ? values : WideLanes(repeating: 1).replacing(with: 0, where: values .== 0)
}

enum ByteMaskLoad: MaskLoad {
    /// A bool's byte is 0 or 1, so its value and its validity agree.
    @inline(__always) static func mass(_ base: UnsafeRawPointer?, _ p: Int, weights: Bool) -> Double {
        let byte = base.unsafelyUnwrapped.load(fromByteOffset: p, as: UInt8.self)
        return weights ? Double(byte) : (byte != 0 ? 1 : 0)
    }

    @inline(__always) static func masses(_ base: UnsafeRawPointer?, _ p: Int, weights: Bool) -> WideLanes {
        let bytes = (base.unsafelyUnwrapped + p).loadUnaligned(as: SIMD8<UInt8>.self)
        var values = WideLanes()
        for lane in 0..<chunkWidth { values[lane] = Double(bytes[lane]) }  // a lane loop compiles to one widening
        return maskMasses(values, weights: weights)
    }
}

enum FloatMaskLoad: MaskLoad {
    @inline(__always) static func mass(_ base: UnsafeRawPointer?, _ p: Int, weights: Bool) -> Double {
        let value = Double(base.unsafelyUnwrapped.assumingMemoryBound(to: Float.self)[p])
        return weights ? value : (value != 0 ? 1 : 0)
    }

    @inline(__always) static func masses(_ base: UnsafeRawPointer?, _ p: Int, weights: Bool) -> WideLanes {
        maskMasses(widen((base.unsafelyUnwrapped + p &* 4).loadUnaligned(as: Lanes.self)), weights: weights)
    }
}

/// An integer mask element type the chunk pass reads with vector loads.
protocol MaskInteger: FixedWidthInteger & SIMDScalar & Codable {
    /// The value as float64 (exact up to 2^53).
    var wide: Double { get }
}

extension Int32: MaskInteger {
    var wide: Double { @inline(__always) get { Double(self) } }
}

extension Int64: MaskInteger {
    var wide: Double { @inline(__always) get { Double(self) } }
}

/// int32 or int64 masks (verl's integer `response_mask`).
enum IntegerMaskLoad<Value: MaskInteger>: MaskLoad {
    @inline(__always) static func mass(_ base: UnsafeRawPointer?, _ p: Int, weights: Bool) -> Double {
        let value = base.unsafelyUnwrapped.loadUnaligned(fromByteOffset: p &* MemoryLayout<Value>.stride, as: Value.self).wide
        return weights ? value : (value != 0 ? 1 : 0)
    }

    @inline(__always) static func masses(_ base: UnsafeRawPointer?, _ p: Int, weights: Bool) -> WideLanes {
        let integers = (base.unsafelyUnwrapped + p &* MemoryLayout<Value>.stride).loadUnaligned(as: SIMD8<Value>.self)
        var values = WideLanes()
        for lane in 0..<chunkWidth { values[lane] = integers[lane].wide }
        return maskMasses(values, weights: weights)
    }
}

/// verl's per-token estimators of `d = clamp(delta)`, each operation rounded by `R`; `e` is
/// `R(exp(d))`.
protocol TokenEstimator {
    static func value<R: ComputeRounding>(_ d: Double, _ e: Double, _ rounding: R.Type) -> Double
}

enum K1: TokenEstimator {
    @inline(__always) static func value<R: ComputeRounding>(_ d: Double, _ e: Double, _ rounding: R.Type) -> Double { -d }
}

enum K2: TokenEstimator {
    @inline(__always) static func value<R: ComputeRounding>(_ d: Double, _ e: Double, _ rounding: R.Type) -> Double {
        R.round(0.5 * R.round(d * d))
    }
}

/// The naive `(exp(d) - 1) - d`: it can be slightly negative for tiny `|d|` (verl's).
enum K3: TokenEstimator {
    @inline(__always) static func value<R: ComputeRounding>(_ d: Double, _ e: Double, _ rounding: R.Type) -> Double {
        R.round(R.round(e - 1) - d)
    }
}

/// The weight rule prepared for one call: bounds rounded to the weights' dtype (torch compares a
/// tensor with a Python float in the tensor's dtype).
struct PreparedWeights {
    let rule: WeightRule
    let dtype: DType
    let lo: Double
    let hi: Double
    /// `lo` (mask) or `1 / hi` (truncate), for the statistics.
    let lower: Double
}

/// Where pass one leaves a row for pass two and the reduction.
struct CorrectionRowRecord {
    var mass = 0.0           // M_i = sum of m
    var valid = 0            // positions with m != 0
    var logRatioSum = 0.0    // S_i = sum m delta (unclamped)
    var trainSum = 0.0       // sum m logp_train
    var rollSum = 0.0        // sum m logp_roll
    var k3KL = 0.0           // sum m ((exp(d) - d) - 1), d unclamped
    var chi2 = 0.0           // sum m exp(clamp(d))^2
    var keep = true          // every sequence option passes
    var rejectedMass = 0.0   // sum m (1 - keep) over every option
    var anyRejected = false  // a token with m != 0 rejected by some option
    var weights = Moments()  // of the weights written
    var rawSum = 0.0         // sum m raw
    var oob = 0.0            // sum m [raw outside [lo, hi]]
}

/// A rejection option's row: its moments (a sequence option's row statistic counts with weight
/// M_i), the statistic, and what it rejected.
struct OptionRecord {
    var moments = Moments()
    var statistic = 0.0      // the row statistic; token options: the row mean of the token values
    var rejectedMass = 0.0
    var anyRejected = false
}

struct CorrectionScan<R: ComputeRounding> {
    let batch: Batch
    let config: CorrectionConfig
    let outputs: CorrectionOutputs
    /// What the call's statistics are reduced with; the passes read its fields by these names.
    let plan: CorrectionPlan
    var options: [PreparedRejection] { plan.options }
    var weights: PreparedWeights? { plan.weights }
    var sumDType: DType { plan.sumDType }
    var meanDType: DType { plan.meanDType }
    let clamp: Double
    let rows: UnsafeMutableBufferPointer<CorrectionRowRecord>
    let optionRows: UnsafeMutableBufferPointer<OptionRecord>
    /// How the chunk pass reads the mask, or nil when the call takes the element pass.
    let chunkMask: ChunkMask?

    init(_ batch: Batch, _ config: CorrectionConfig, _ outputs: CorrectionOutputs) {
        self.batch = batch
        self.config = config
        self.outputs = outputs
        plan = CorrectionPlan(config, maskDType: batch.mask?.dtype,
                              weightsDType: outputs.weights.base == nil ? nil : outputs.weights.dtype,
                              logProbs: batch.source.secondary != nil)
        clamp = R.round(config.clamp)
        chunkMask = ChunkMask(batch, config, weightsDType: plan.weights?.dtype)
        rows = .allocate(capacity: batch.rows)
        rows.initialize(repeating: CorrectionRowRecord())
        optionRows = .allocate(capacity: batch.rows * config.rejections.count)
        optionRows.initialize(repeating: OptionRecord())
    }

    /// The passes, the row records (to `rowRecords`), the reduction and the normalisation.
    func run(rowRecords: CorrectionRowsBuffer?) {
        defer {
            rows.deallocate()
            optionRows.deallocate()
        }
        let workers = workerCount(threads: config.threads, rows: batch.rows, positions: batch.gridCount)
        let longest = chunkMask == nil ? longestSpan : 0
        forEachRowBlock(rows: batch.rows, workers: workers) { _, block in
            let scratch = Scratch(capacity: longest)
            defer { scratch.deallocate() }
            for row in block { scanRow(row, scratch) }
        }
        clearPackedGaps()
        let reduction = CorrectionReduction(plan: plan, rows: UnsafeBufferPointer(rows),
                                            optionRows: UnsafeBufferPointer(optionRows))
        if let rowRecords { writeRowRecords(reduction, to: rowRecords) }
        let statistics = reduceCorrection(reduction)
        if config.normalize && outputs.weights.base != nil {
            scaleWeights(batch, divisor: statistics.weights.normFactor, weights: outputs.weights, threads: config.threads)
        }
        outputs.statistics?.pointee = statistics
    }

    /// Where one worker widens a row before the passes over it: the log-ratio rounded to the
    /// compute dtype, the weight `m` (0 where not counted), `exp(clamp(delta))` rounded, and the
    /// token options' verdict. Rows are read from the caller's arrays once.
    struct Scratch {
        let delta: UnsafeMutablePointer<Double>
        let mass: UnsafeMutablePointer<Double>
        let exps: UnsafeMutablePointer<Double>
        let keep: UnsafeMutablePointer<Bool>
        /// The chunk pass's per-option lanes (at most `maximumRejections`).
        let optionLanes: UnsafeMutablePointer<OptionLanes>

        /// `capacity`: the longest row (0 for the chunk pass, which needs no row scratch).
        init(capacity: Int) {
            let capacity = Swift.max(1, capacity)
            delta = .allocate(capacity: capacity + chunkWidth)  // room for a last, partial SIMD chunk
            mass = .allocate(capacity: capacity)
            exps = .allocate(capacity: capacity + chunkWidth)
            keep = .allocate(capacity: capacity)
            optionLanes = .allocate(capacity: maximumRejections)
        }

        func deallocate() {
            delta.deallocate()
            mass.deallocate()
            exps.deallocate()
            keep.deallocate()
            optionLanes.deallocate()
        }
    }

    /// The longest row span (the scratch every worker needs).
    private var longestSpan: Int {
        if batch.layout == .padded { return batch.cols }
        return (0..<batch.rows).reduce(0) { Swift.max($0, batch.rowSpan($1).count) }
    }

    func cursors(_ row: Int, start: Int) -> (RowCursor, RowCursor?, RowCursor?) {
        let layout = batch.layout
        return (RowCursor(batch.source.primary, row: row, start: start, layout: layout),
                batch.source.secondary.map { RowCursor($0, row: row, start: start, layout: layout) },
                batch.mask.map { RowCursor($0, row: row, start: start, layout: layout) })
    }

    /// Fills the scratch's delta and mass for positions `0 ..< n` and returns the m-weighted
    /// sums of the log-probs (0 for a log-ratio input).
    private func load(_ cursors: (RowCursor, RowCursor?, RowCursor?), count n: Int, into s: Scratch) -> (train: Double, roll: Double) {
        let (primary, secondary, mask) = cursors
        // The common layout gets loops of its own: contiguous float32 log-probs, and a contiguous
        // byte or float32 mask (or none).
        if primary.dtype == .f32 && primary.stride == 1, secondary.map({ $0.dtype == .f32 && $0.stride == 1 }) ?? true {
            let train = primary.base.assumingMemoryBound(to: Float.self)
            let roll = secondary?.base.assumingMemoryBound(to: Float.self)
            switch mask {
            case nil: return widenRow(ContiguousLoad<NoMaskLoad>(train: train, roll: roll, mask: nil), count: n, into: s)
            case let mask? where mask.stride == 1 && mask.dtype.isByteMask:
                return widenRow(ContiguousLoad<ByteMaskLoad>(train: train, roll: roll, mask: mask.base), count: n, into: s)
            case let mask? where mask.stride == 1 && mask.dtype == .f32:
                return widenRow(ContiguousLoad<FloatMaskLoad>(train: train, roll: roll, mask: mask.base), count: n, into: s)
            default: break
            }
        }
        return widenRow(CursorLoad(primary: primary, secondary: secondary, mask: mask), count: n, into: s)
    }

    /// The loop of `load`, specialised for how the row is read.
    @inline(__always)
    private func widenRow<Load: RowLoad>(_ load: Load, count n: Int, into s: Scratch) -> (train: Double, roll: Double) {
        let weights = config.maskWeights, paired = load.paired
        var trainSum = LaneSum(), rollSum = LaneSum()
        for p in 0..<n {
            let m = load.mass(p, weights: weights)
            s.mass[p] = m
            let t = load.train(p)
            if paired {
                let r = load.roll(p)
                s.delta[p] = R.round(t - r)
                if m != 0 {
                    trainSum.add(m * t, at: p)
                    rollSum.add(m * r, at: p)
                }
            } else {
                s.delta[p] = R.round(t)
            }
        }
        return (trainSum.total, rollSum.total)
    }

    /// exps[p] = R(exp(clamp(delta[p]))) for p < n, eight at a time (the last chunk padded with
    /// zeros: the scratch has room for it).
    private func fillExps(_ s: Scratch, count n: Int) {
        (s.delta + n).update(repeating: 0, count: (chunkWidth - n % chunkWidth) % chunkWidth)
        let limit = SIMD8<Double>(repeating: clamp)
        var p = 0
        while p < n {
            var x = UnsafeRawPointer(s.delta + p).loadUnaligned(as: SIMD8<Double>.self)
            x = x.replacing(with: -limit, where: x .< -limit).replacing(with: limit, where: x .> limit)
            UnsafeMutableRawPointer(s.exps + p).storeBytes(of: R.round(simdExp(x)), as: SIMD8<Double>.self)
            p += chunkWidth
        }
    }

    private func scanRow(_ row: Int, _ s: Scratch) {
        if let chunkMask {
            chunkRow(row, chunkMask, s.optionLanes)
            return
        }
        let span = batch.rowSpan(row)
        let counted = batch.scanCount(row, span: span.count)
        var record = CorrectionRowRecord()
        let cursors = span.count > 0 ? self.cursors(row, start: span.start) : nil
        if let cursors {
            (record.trainSum, record.rollSum) = load(cursors, count: counted, into: s)
            fillExps(s, count: counted)
            addRowSums(s, count: counted, &record)
        }
        s.keep.update(repeating: true, count: counted)
        let optionBase = row * options.count
        for (index, option) in options.enumerated() {
            switch option.rejection.estimator {
            case .k1: optionRows[optionBase + index] = scanOption(option, K1.self, s, count: counted)
            case .k2: optionRows[optionBase + index] = scanOption(option, K2.self, s, count: counted)
            default: optionRows[optionBase + index] = scanOption(option, K3.self, s, count: counted)
            }
        }
        decideOptions(row, &record)
        var sums = RowLanes()  // sum m (1 - keep of the token options)
        if options.contains(where: { $0.rejection.level == .token }) {
            for p in 0..<counted where !s.keep[p] && s.mass[p] != 0 {
                sums.tokenRejectedMass.add(s.mass[p], at: p)
                sums.tokenRejected.add(1, at: p)
            }
        }
        finishRow(row, &record, tokenRejections: sums)
        if let cursors, outputs.mask.base != nil || weights != nil {
            writeRow(row, span: span, counted: counted, mask: cursors.2, s, record: &record)
        }
        rows[row] = record
    }

    /// The options' row entries (`optionRows`, as the scan left them) completed: a token
    /// option's row mean (for the seq_* statistics), a sequence option's statistic and decision.
    func decideOptions(_ row: Int, _ record: inout CorrectionRowRecord) {
        let base = row * options.count
        for (index, option) in options.enumerated() {
            if option.rejection.level == .token {
                optionRows[base + index].statistic = optionRows[base + index].moments.weighted / (record.mass + 1e-8)
            } else {
                decide(option, &optionRows[base + index], &record)
            }
        }
    }

    /// The row's rejected mass and verdict from the sequence decisions and the token options'
    /// rejections, and its `keep_row`.
    func finishRow(_ row: Int, _ record: inout CorrectionRowRecord, tokenRejections sums: RowLanes) {
        record.rejectedMass = record.keep ? sums.tokenRejectedMass.total : record.mass
        record.anyRejected = !record.keep && record.valid > 0 || sums.tokenRejected.total > 0
        if outputs.keepRow.base != nil { outputs.keepRow.store(record.anyRejected ? 0 : 1, row: row) }
    }

    /// The row's own sums: mass, valid count, S, and the off-policy terms.
    private func addRowSums(_ s: Scratch, count n: Int, _ record: inout CorrectionRowRecord) {
        var sums = RowLanes()
        for p in 0..<n {
            let m = s.mass[p]
            guard m != 0 else { continue }
            let delta = s.delta[p], e = s.exps[p]
            sums.mass.add(m, at: p)
            sums.valid.add(1, at: p)
            sums.logRatio.add(m * delta, at: p)
            // verl's k3_kl takes the unclamped log-ratio (its exp only differs beyond the clamp).
            let unclamped = delta.magnitude <= clamp ? e : R.round(exp(delta))
            sums.k3KL.add(m * R.round(R.round(unclamped - delta) - 1), at: p)
            sums.chi2.add(m * R.round(e * e), at: p)
        }
        let (train, roll) = (record.trainSum, record.rollSum)
        sums.fill(&record)
        (record.trainSum, record.rollSum) = (train, roll)
    }

    /// One option over the row's valid tokens: a token option's moments and verdicts (into
    /// `s.keep`), a sequence option's raw sum or maximum (in `statistic`).
    private func scanOption<K: TokenEstimator>(_ option: PreparedRejection, _ estimator: K.Type, _ s: Scratch,
                                               count n: Int) -> OptionRecord {
        var lanes = OptionLanes()
        let limit = clamp
        for p in 0..<n {
            let m = s.mass[p]
            guard m != 0 else { continue }
            let value = K.value(clamped(s.delta[p], -limit, limit), s.exps[p], R.self)
            switch option.rejection.level {
            case .token:
                lanes.moments.add(value, mass: m, at: p, clampLo: option.stdLo, clampHi: option.hi)
                if value > option.hi { lanes.moments.high.add(m, at: p) }
                if value < option.lo { lanes.moments.low.add(m, at: p) }
                if !option.passes(value) {
                    lanes.reject(mass: m, at: p)
                    s.keep[p] = false
                }
            case .sequenceSum, .sequenceMean: lanes.moments.weighted.add(m * value, at: p)
            case .sequenceMax: lanes.addMaximum(value, at: p)
            }
        }
        return lanes.record(option.rejection.level)
    }

    /// A sequence option's row statistic and decision.
    func decide(_ option: PreparedRejection, _ entry: inout OptionRecord, _ record: inout CorrectionRowRecord) {
        let statistic: Double
        switch option.rejection.level {
        case .sequenceSum: statistic = rounded(entry.statistic, to: sumDType)
        case .sequenceMean:
            let denominator = rounded(record.mass + 1e-8, to: config.meanDType)
            statistic = rounded(rounded(entry.statistic, to: sumDType) / denominator, to: meanDType)
        default: statistic = record.valid == 0 ? 0 : entry.statistic
        }
        entry = OptionRecord(statistic: statistic)
        guard record.valid > 0 else { return }
        entry.moments = Moments(statistic, mass: record.mass, option)
        if !option.passes(statistic) {
            entry.rejectedMass = record.mass
            entry.anyRejected = true
            record.keep = false
        }
    }

    /// Pass two: the output mask and the weights of one row, and the weights' moments.
    private func writeRow(_ row: Int, span: (start: Int, count: Int), counted: Int, mask: RowCursor?, _ s: Scratch,
                          record: inout CorrectionRowRecord) {
        if outputs.mask.base != nil {
            let grid = TypedGrid(outputs.mask, row: row, start: span.start, layout: batch.layout)
            let dtype = outputs.mask.dtype
            if let mask, mask.dtype.isByteMask {  // the common mask: bytes copied or cleared
                let out = grid.base.assumingMemoryBound(to: UInt8.self), source = mask.base.assumingMemoryBound(to: UInt8.self)
                let (outStride, sourceStride) = (grid.stride, mask.stride)
                for p in 0..<counted { out[p &* outStride] = record.keep && s.keep[p] ? source[p &* sourceStride] : 0 }
            } else {
                for p in 0..<counted {
                    storeMaskValue(keep: record.keep && s.keep[p], source: mask?.address(p), at: grid.address(p), dtype)
                }
            }
            for p in counted..<span.count { storeOne(false, at: grid.address(p), dtype) }
        }
        guard let weights else { return }
        switch weights.dtype {
        case .f64: writeWeights(row, span: span, counted: counted, s, weights, RoundF64.self, record: &record)
        case .bf16: writeWeights(row, span: span, counted: counted, s, weights, RoundBF16.self, record: &record)
        case .f16: writeWeights(row, span: span, counted: counted, s, weights, RoundF16.self, record: &record)
        default: writeWeights(row, span: span, counted: counted, s, weights, RoundF32.self, record: &record)
        }
    }

    /// The weights of one row in the dtype `W` rounds to, and their moments.
    private func writeWeights<W: ComputeRounding>(_ row: Int, span: (start: Int, count: Int), counted: Int, _ s: Scratch,
                                                  _ weights: PreparedWeights, _ rounding: W.Type,
                                                  record: inout CorrectionRowRecord) {
        let grid = outputs.weights.base == nil ? nil : TypedGrid(outputs.weights, row: row, start: span.start, layout: batch.layout)
        let sequenceWeight = sequenceExp(record.logRatioSum)
        let token = weights.rule.level == .token, truncate = weights.rule.mode == .truncate
        var lanes = WeightLanes()
        for p in 0..<counted {
            let m = s.mass[p]
            let raw = W.round((token ? s.exps[p] : sequenceWeight) * m)
            let weight = truncate ? (raw > weights.hi ? weights.hi : raw) : (raw >= weights.lo && raw <= weights.hi ? raw : 0)
            if m != 0 { lanes.add(raw: raw, weight: weight, mass: m, at: p, weights) }
            if let grid { W.store(weight, at: grid.address(p)) }
        }
        if let grid {
            for p in counted..<span.count { W.store(0, at: grid.address(p)) }
        }
        lanes.fill(&record)
    }

    /// verl's sequence weight of a row sum (`CorrectionPlan.sequenceExp`).
    func sequenceExp(_ sum: Double) -> Double { sequenceWeight(sum, clamp: config.clamp, dtype: sumDType) }

    /// Packed grids: positions before the first row and after the last are outside every row, so
    /// their mask and weight are 0.
    private func clearPackedGaps() {
        guard batch.layout == .packed else { return }
        let first = batch.rows > 0 ? batch.offsets.unsafelyUnwrapped.index(0) : batch.cols
        let last = batch.rows > 0 ? batch.offsets.unsafelyUnwrapped.index(batch.rows) : batch.cols
        for out in [outputs.mask, outputs.weights] where out.base != nil {
            let grid = TypedGrid(out, row: 0, start: 0, layout: .packed)
            for p in Array(0..<first) + Array(last..<batch.cols) { storeOne(false, at: grid.address(p), out.dtype) }
        }
    }
}

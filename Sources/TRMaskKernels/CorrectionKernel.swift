/// Rollout correction in verl's arithmetic (header: trm_rollout_correction; SPEC §8, §8.1): one
/// pass per row for the rejection options' statistics and decisions, a second over the row (still
/// in cache) for the output mask and the weights, per-row records reduced in row order
/// (`CorrectionStatistics.swift`).

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Validates every argument, then computes. Returns `.ok` with every requested output written, or
/// the first problem found with nothing written.
public func rolloutCorrection(_ batch: Batch, config: CorrectionConfig, outputs: CorrectionOutputs) -> Status {
    let status = validateCorrection(batch, config: config, outputs: outputs)
    guard status == .ok else { return status }
    switch config.computeDType {
    case .f64: CorrectionScan<RoundF64>(batch, config, outputs).run()
    case .bf16: CorrectionScan<RoundBF16>(batch, config, outputs).run()
    case .f16: CorrectionScan<RoundF16>(batch, config, outputs).run()
    default: CorrectionScan<RoundF32>(batch, config, outputs).run()
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
    scaleWeights(batch, divisor: divisor, weights: weights, threads: 0)
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

    @inline(__always)
    func value(k1: Double, k2: Double, k3: Double) -> Double {
        switch rejection.estimator {
        case .k1: k1
        case .k2: k2
        default: k3
        }
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

/// Moments of a per-token quantity over a row's positions with `m != 0`.
struct Moments {
    var weighted = 0.0       // sum m x
    var max = -Double.infinity
    var min = Double.infinity
    var high = 0.0           // sum m [x > hi]
    var low = 0.0            // sum m [x < lo]
    var clampedSum = 0.0     // sum m c, c = clamp(x, clampLo, clampHi)
    var clampedSquares = 0.0 // sum m c^2

    @inline(__always)
    mutating func add(_ x: Double, mass m: Double, clampLo: Double, clampHi: Double) {
        weighted += m * x
        max = propagatingMax(max, x)
        min = propagatingMin(min, x)
        let c = clamped(x, clampLo, clampHi)
        clampedSum += m * c
        clampedSquares += m * c * c
    }

    /// `add`, with the fractions above `option.hi` and below `option.lo`.
    @inline(__always)
    mutating func add(_ x: Double, mass m: Double, _ option: PreparedRejection) {
        add(x, mass: m, clampLo: option.stdLo, clampHi: option.hi)
        if x > option.hi { high += m }
        if x < option.lo { low += m }
    }
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
    let options: [PreparedRejection]
    let weights: PreparedWeights?
    /// The dtype of masked sums: torch multiplies the values by the mask, so a float mask
    /// promotes them (`compute` with a bool or integer mask).
    let sumDType: DType
    /// The dtype of masked means: the sum's divided by the denominator's.
    let meanDType: DType
    let clamp: Double
    let rows: UnsafeMutableBufferPointer<CorrectionRowRecord>
    let optionRows: UnsafeMutableBufferPointer<OptionRecord>

    init(_ batch: Batch, _ config: CorrectionConfig, _ outputs: CorrectionOutputs) {
        self.batch = batch
        self.config = config
        self.outputs = outputs
        let compute = config.computeDType
        let sumDType = batch.mask.map { $0.dtype.isFloat ? promoted(compute, $0.dtype) : compute } ?? compute
        self.sumDType = sumDType
        meanDType = promoted(sumDType, config.meanDType)
        options = config.rejections.map { rejection in
            let dtype: DType
            switch rejection.level {
            case .sequenceSum: dtype = sumDType
            case .sequenceMean: dtype = promoted(sumDType, config.meanDType)
            default: dtype = compute
            }
            return PreparedRejection(rejection, statisticDType: dtype)
        }
        weights = config.weightRule.map { rule in
            let dtype = outputs.weights.base == nil ? compute : outputs.weights.dtype
            return PreparedWeights(rule: rule, dtype: dtype, lo: rounded(rule.lo, to: dtype), hi: rounded(rule.hi, to: dtype),
                                   lower: rounded(rule.statisticsLower, to: dtype))
        }
        clamp = R.round(config.clamp)
        rows = .allocate(capacity: batch.rows)
        rows.initialize(repeating: CorrectionRowRecord())
        optionRows = .allocate(capacity: batch.rows * config.rejections.count)
        optionRows.initialize(repeating: OptionRecord())
    }

    func run() {
        defer {
            rows.deallocate()
            optionRows.deallocate()
        }
        let workers = workerCount(threads: config.threads, rows: batch.rows, positions: batch.gridCount)
        forEachRowBlock(rows: batch.rows, workers: workers) { _, block in
            for row in block { scanRow(row) }
        }
        clearPackedGaps()
        let statistics = reduceCorrection(self)
        if config.normalize && outputs.weights.base != nil {
            scaleWeights(batch, divisor: statistics.weights.normFactor, weights: outputs.weights, threads: config.threads)
        }
        outputs.statistics?.pointee = statistics
    }

    /// The log-ratio, the mask element and the weight `m` of position `p` of a row.
    struct Position {
        var delta: Double
        var train: Double
        var roll: Double
        var mass: Double
        var maskAddress: UnsafeRawPointer?
    }

    private func position(_ p: Int, _ cursors: (RowCursor, RowCursor?, RowCursor?), counted: Bool) -> Position {
        let (primary, secondary, mask) = cursors
        let train = primary.double(p)
        let roll = secondary?.double(p) ?? 0
        let delta = R.round(secondary == nil ? train : train - roll)
        var mass = 0.0
        var address: UnsafeRawPointer? = nil
        if counted {
            if let mask {
                address = mask.address(p)
                let value = loadDouble(mask.address(p), mask.dtype)
                mass = config.maskWeights ? value : (value != 0 ? 1 : 0)
            } else {
                mass = 1
            }
        }
        return Position(delta: delta, train: train, roll: roll, mass: mass, maskAddress: address)
    }

    private func cursors(_ row: Int, start: Int) -> (RowCursor, RowCursor?, RowCursor?) {
        let layout = batch.layout
        return (RowCursor(batch.source.primary, row: row, start: start, layout: layout),
                batch.source.secondary.map { RowCursor($0, row: row, start: start, layout: layout) },
                batch.mask.map { RowCursor($0, row: row, start: start, layout: layout) })
    }

    private func scanRow(_ row: Int) {
        let span = batch.rowSpan(row)
        let counted = batch.scanCount(row, span: span.count)
        let cursors = span.count > 0 ? self.cursors(row, start: span.start) : nil
        var record = CorrectionRowRecord()
        let optionBase = row * options.count
        let hasLogProbs = batch.source.secondary != nil
        var tokenRejectedMass = 0.0  // sum m (1 - keep of the token options)
        var tokenRejected = false
        if let cursors {
            for p in 0..<counted {
                let at = position(p, cursors, counted: true)
                let m = at.mass
                guard m != 0 else { continue }
                record.mass += m
                record.valid += 1
                record.logRatioSum += m * at.delta
                if hasLogProbs {
                    record.trainSum += m * at.train
                    record.rollSum += m * at.roll
                }
                let d = clamped(at.delta, -clamp, clamp)
                let e = roundedExp(d, R.self)
                let unclampedExp = d == at.delta ? e : roundedExp(at.delta, R.self)
                record.k3KL += m * R.round(R.round(unclampedExp - at.delta) - 1)
                record.chi2 += m * R.round(e * e)
                let k1 = -d, k2 = R.round(0.5 * R.round(d * d)), k3 = R.round(R.round(e - 1) - d)
                var keepToken = true
                for (index, option) in options.enumerated() {
                    let value = option.value(k1: k1, k2: k2, k3: k3)
                    switch option.rejection.level {
                    case .token:
                        optionRows[optionBase + index].moments.add(value, mass: m, option)
                        if !option.passes(value) {
                            optionRows[optionBase + index].rejectedMass += m
                            optionRows[optionBase + index].anyRejected = true
                            keepToken = false
                        }
                    case .sequenceSum, .sequenceMean:
                        optionRows[optionBase + index].statistic += m * value
                    case .sequenceMax:
                        optionRows[optionBase + index].moments.max = propagatingMax(optionRows[optionBase + index].moments.max, value)
                    }
                }
                if !keepToken {
                    tokenRejectedMass += m
                    tokenRejected = true
                }
            }
        }
        let denominator = rounded(record.mass + 1e-8, to: config.meanDType)
        for (index, option) in options.enumerated() {
            let slot = optionBase + index
            var entry = optionRows[slot]
            switch option.rejection.level {
            case .token:
                entry.statistic = entry.moments.weighted / (record.mass + 1e-8)
            case .sequenceSum, .sequenceMean, .sequenceMax:
                let statistic: Double
                switch option.rejection.level {
                case .sequenceSum: statistic = rounded(entry.statistic, to: sumDType)
                case .sequenceMean: statistic = rounded(rounded(entry.statistic, to: sumDType) / denominator, to: meanDType)
                default: statistic = record.valid == 0 ? 0 : entry.moments.max
                }
                entry = OptionRecord(statistic: statistic)
                if record.valid > 0 {
                    entry.moments.add(statistic, mass: record.mass, option)
                    if !option.passes(statistic) {
                        entry.rejectedMass = record.mass
                        entry.anyRejected = true
                        record.keep = false
                    }
                }
            }
            optionRows[slot] = entry
        }
        record.rejectedMass = record.keep ? tokenRejectedMass : record.mass
        record.anyRejected = !record.keep && record.valid > 0 || tokenRejected
        if outputs.keepRow.base != nil { outputs.keepRow.store(record.anyRejected ? 0 : 1, row: row) }
        if let cursors, outputs.mask.base != nil || weights != nil {
            writeRow(row, span: span, counted: counted, cursors: cursors, record: &record)
        }
        rows[row] = record
    }

    /// Pass two: the output mask and the weights of one row, and the weights' moments.
    private func writeRow(_ row: Int, span: (start: Int, count: Int), counted: Int, cursors: (RowCursor, RowCursor?, RowCursor?),
                          record: inout CorrectionRowRecord) {
        let maskGrid = outputs.mask.base == nil ? nil : TypedGrid(outputs.mask, row: row, start: span.start, layout: batch.layout)
        let weightGrid = outputs.weights.base == nil ? nil : TypedGrid(outputs.weights, row: row, start: span.start, layout: batch.layout)
        let tokenOptions = options.filter { $0.rejection.level == .token }
        let sequenceWeight = sequenceExp(record.logRatioSum)
        for p in 0..<span.count {
            let inRow = p < counted
            let at = position(p, cursors, counted: inRow)
            if let maskGrid {
                var keep = record.keep && inRow
                if keep && !tokenOptions.isEmpty {
                    let d = clamped(at.delta, -clamp, clamp)
                    let e = roundedExp(d, R.self)
                    let k1 = -d, k2 = R.round(0.5 * R.round(d * d)), k3 = R.round(R.round(e - 1) - d)
                    for option in tokenOptions where !option.passes(option.value(k1: k1, k2: k2, k3: k3)) { keep = false }
                }
                if inRow {
                    storeMaskValue(keep: keep, source: at.maskAddress, at: maskGrid.address(p), outputs.mask.dtype)
                } else {
                    storeOne(false, at: maskGrid.address(p), outputs.mask.dtype)
                }
            }
            guard let weights else { continue }
            var weight = 0.0
            if inRow {
                let base = weights.rule.level == .token ? roundedExp(clamped(at.delta, -clamp, clamp), R.self) : sequenceWeight
                let raw = rounded(base * at.mass, to: weights.dtype)
                switch weights.rule.mode {
                case .mask: weight = raw >= weights.lo && raw <= weights.hi ? raw : 0
                default: weight = raw > weights.hi ? weights.hi : raw
                }
                let m = at.mass
                if m != 0 {
                    record.weights.add(weight, mass: m, clampLo: 0, clampHi: weights.hi)
                    if raw > weights.hi { record.weights.high += m }
                    if raw < weights.lower { record.weights.low += m }
                    if raw < weights.lo || raw > weights.hi { record.oob += m }
                    record.rawSum += m * raw
                }
            }
            if let weightGrid { storeFloat(weight, at: weightGrid.address(p), weights.dtype) }
        }
    }

    /// `exp(clamp(S))` of a row's masked log-ratio sum `S`, in the sums' dtype (verl's sequence
    /// weight, and the statistics built on it).
    func sequenceExp(_ sum: Double, scale: Double = 1) -> Double {
        let limit = rounded(config.clamp, to: sumDType)
        return rounded(exp(rounded(scale * clamped(rounded(sum, to: sumDType), -limit, limit), to: sumDType)), to: sumDType)
    }

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

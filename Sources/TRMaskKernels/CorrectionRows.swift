/// Row records of rollout correction (header: trm_correction_rows_t, trm_correction_reduce;
/// docs/sharded-rows.md): the per-row sums, extrema and decisions the batch statistics are reduced
/// from, written as float64 fields. A batch split by rows into shards (data-parallel ranks) gives
/// each row the record it has in the whole batch, since a row's record depends on that row alone;
/// `reduceCorrectionRows` runs `reduceCorrection` over the shards' records in shard order, so its
/// statistics equal, bit for bit, those of one call on the concatenated batch.

/// Fields of a row record (`TRM_CORRECTION_ROW_FIELDS`): mass, valid, log_ratio_sum, train_sum,
/// roll_sum, k3_kl, chi2, rejected_mass, any_rejected, raw_sum, oob, then the weights' moments
/// (weighted, max, min, high, low, clamped_sum, clamped_squares).
public let correctionRowFields = 18
/// Fields of one rejection option's entry (`TRM_CORRECTION_OPTION_FIELDS`): its moments (as
/// above), statistic, rejected_mass, any_rejected.
public let correctionOptionFields = 10
/// Most shards one reduce takes (`TRM_MAX_CORRECTION_SHARDS`).
public let maximumCorrectionShards = 65536

/// Doubles per row record of a call with `rejections` options (`TRM_CORRECTION_ROW_WIDTH`).
public func correctionRowWidth(rejections: Int) -> Int { correctionRowFields + correctionOptionFields * rejections }

/// Largest `valid` count a record may hold: every integer up to it is a double.
private let maximumRecordCount = 9_007_199_254_740_992.0  // 2^53

/// A caller's buffer of row records, `rows * correctionRowWidth(rejections:)` doubles, row-major,
/// with the facts of the call the reduction depends on (`CorrectionPlan`). Written by a
/// correction call (the facts must be the call's), read by `reduceCorrectionRows`.
public struct CorrectionRowsBuffer: @unchecked Sendable {
    public var base: UnsafeMutablePointer<Double>?
    public var rows: Int
    /// The batch mask's dtype; nil without a mask.
    public var maskDType: DType?
    /// The weights output's dtype; nil when no weights are written.
    public var weightsDType: DType?
    /// The batch gave log-probs (not a log-ratio).
    public var logProbs: Bool

    public init(base: UnsafeMutablePointer<Double>?, rows: Int, maskDType: DType?, weightsDType: DType?, logProbs: Bool) {
        self.base = base
        self.rows = rows
        self.maskDType = maskDType
        self.weightsDType = weightsDType
        self.logProbs = logProbs
    }

    func sameFacts(_ other: CorrectionRowsBuffer) -> Bool {
        maskDType == other.maskDType && weightsDType == other.weightsDType && logProbs == other.logProbs
    }
}

/// Sequential stores of record fields.
private struct FieldWriter {
    var cursor: UnsafeMutablePointer<Double>

    mutating func put(_ value: Double) {
        cursor.pointee = value
        cursor += 1
    }

    mutating func put(_ flag: Bool) { put(flag ? 1.0 : 0.0) }

    /// `max` and `min` as the reduction reads them (NaN once a NaN was added).
    mutating func put(_ m: Moments) {
        put(m.weighted)
        put(m.max)
        put(m.min)
        put(m.high)
        put(m.low)
        put(m.clampedSum)
        put(m.clampedSquares)
    }
}

/// Sequential loads of record fields; `valid` is false once a count or flag was out of its domain.
private struct FieldReader {
    var cursor: UnsafePointer<Double>
    var valid = true

    mutating func take() -> Double {
        defer { cursor += 1 }
        return cursor.pointee
    }

    mutating func flag() -> Bool {
        let value = take()
        if value != 0 && value != 1 { valid = false }
        return value == 1
    }

    mutating func count() -> Int {
        let value = take()
        guard value >= 0, value <= maximumRecordCount, value.rounded(.towardZero) == value else {
            valid = false
            return 0
        }
        return Int(value)
    }

    /// The inverse of `FieldWriter.put(_: Moments)` for everything the reduction reads.
    mutating func moments() -> Moments {
        var m = Moments()
        (m.weighted, m.largest, m.smallest) = (take(), take(), take())
        (m.high, m.low, m.clampedSum, m.clampedSquares) = (take(), take(), take(), take())
        return m
    }
}

/// Writes the records of `r` to `out` (validated: `out.rows == r.rows.count`).
func writeRowRecords(_ r: CorrectionReduction, to out: CorrectionRowsBuffer) {
    guard let base = out.base else { return }
    let count = r.plan.options.count, width = correctionRowWidth(rejections: count)
    for (row, record) in r.rows.enumerated() {
        var w = FieldWriter(cursor: base + row &* width)
        w.put(record.mass)
        w.put(Double(record.valid))
        w.put(record.logRatioSum)
        w.put(record.trainSum)
        w.put(record.rollSum)
        w.put(record.k3KL)
        w.put(record.chi2)
        w.put(record.rejectedMass)
        w.put(record.anyRejected)
        w.put(record.rawSum)
        w.put(record.oob)
        w.put(record.weights)
        for entry in r.optionRows[(row &* count)..<(row &* count &+ count)] {
            w.put(entry.moments)
            w.put(entry.statistic)
            w.put(entry.rejectedMass)
            w.put(entry.anyRejected)
        }
    }
}

/// The record of one row and its options' entries, read back; nil when a count or flag is out of
/// its domain.
private func readRowRecord(_ base: UnsafePointer<Double>, options: UnsafeMutableBufferPointer<OptionRecord>) -> CorrectionRowRecord? {
    var r = FieldReader(cursor: base)
    var record = CorrectionRowRecord()
    record.mass = r.take()
    record.valid = r.count()
    (record.logRatioSum, record.trainSum, record.rollSum, record.k3KL, record.chi2) = (r.take(), r.take(), r.take(), r.take(), r.take())
    record.rejectedMass = r.take()
    record.anyRejected = r.flag()
    (record.rawSum, record.oob) = (r.take(), r.take())
    record.weights = r.moments()
    for index in options.indices {
        var entry = OptionRecord()
        entry.moments = r.moments()
        (entry.statistic, entry.rejectedMass) = (r.take(), r.take())
        entry.anyRejected = r.flag()
        options[index] = entry
    }
    return r.valid ? record : nil
}

/// Statistics of the row records of `shards`, in shard order: equal, bit for bit, to those of one
/// correction call on the shards' batches concatenated by rows (`config` the calls'). Every shard
/// must carry the same facts; `target`, the memory the caller stores the statistics to, must not
/// overlap a shard's records. Returns `.ok` with `statistics` written, or the first problem found
/// with nothing written.
public func reduceCorrectionRows(config: CorrectionConfig, shards: [CorrectionRowsBuffer],
                                 statistics: UnsafeMutablePointer<CorrectionStatistics>,
                                 target: UnsafeRawBufferPointer? = nil) -> Status {
    guard shards.count <= maximumCorrectionShards else { return .badSize }
    let status = checkCorrectionConfig(config, weightsWritten: shards.contains { $0.weightsDType != nil })
    guard status == .ok else { return status }
    let width = correctionRowWidth(rejections: config.rejections.count)
    let targetExtent = target.flatMap { addressRange(base: UnsafeRawPointer($0.baseAddress), extent: (0, $0.count)) }
    var rows = 0
    for shard in shards {
        if let dtype = shard.weightsDType, !dtype.isFloat { return .badDType }
        var extent: Extent?
        let status = checkArray(base: UnsafeRawPointer(shard.base), dims: .oneD(sizeProduct(shard.rows, width) ?? -1, 1),
                                elementSize: MemoryLayout<Double>.stride, extent: &extent)
        guard status == .ok else { return status }
        if let extent, let targetExtent, extent.overlaps(targetExtent) { return .aliasing }
        guard shard.sameFacts(shards[0]) else { return .badCorrectionRows }
        let (sum, overflow) = rows.addingReportingOverflow(shard.rows)
        guard !overflow else { return .badSize }
        rows = sum
    }
    let count = config.rejections.count
    guard let optionCells = sizeProduct(rows, count), let optionBytes = scratchBytes(optionCells, of: OptionRecord.self),
          scratchBytes(rows, of: CorrectionRowRecord.self, plus: optionBytes) != nil else { return .tooLarge }
    let records = UnsafeMutableBufferPointer<CorrectionRowRecord>.allocate(capacity: rows)
    let optionRows = UnsafeMutableBufferPointer<OptionRecord>.allocate(capacity: optionCells)
    defer {
        records.deallocate()
        optionRows.deallocate()
    }
    var row = 0, tokens = 0
    for shard in shards {
        for index in 0..<shard.rows {
            let entries = UnsafeMutableBufferPointer(rebasing: optionRows[(row &* count)..<(row &* count &+ count)])
            guard let record = readRowRecord(shard.base.unsafelyUnwrapped + index &* width, options: entries) else {
                return .badCorrectionRows
            }
            // The reduction adds the counts in Int: their total must fit.
            let (sum, overflow) = tokens.addingReportingOverflow(record.valid)
            guard !overflow else { return .badCorrectionRows }
            tokens = sum
            (records.baseAddress.unsafelyUnwrapped + row).initialize(to: record)
            row &+= 1
        }
    }
    let first = shards.first
    let plan = CorrectionPlan(config, maskDType: first?.maskDType, weightsDType: first?.weightsDType,
                              logProbs: first?.logProbs ?? false)
    statistics.pointee = reduceCorrection(CorrectionReduction(plan: plan, rows: UnsafeBufferPointer(records),
                                                              optionRows: UnsafeBufferPointer(optionRows)))
    return .ok
}

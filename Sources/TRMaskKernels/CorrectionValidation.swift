/// Argument validation of the rollout-correction entry points (SPEC §11), on top of the batch and
/// output checks every kernel shares (`Validation.swift`).

/// A typed token-grid output: a dtype from `allowed`, `rowStride` 0 when packed, strides that keep
/// elements apart, no overlap with anything in `taken`.
private func checkTypedGrid(_ out: TypedOut, _ batch: Batch, allowed: (DType) -> Bool, taken: inout ExtentList) -> Status {
    guard out.base != nil else { return .ok }
    guard allowed(out.dtype) else { return .badDType }
    if batch.layout == .packed && out.rowStride != 0 { return .badStride }
    return checkOutput(UnsafeRawPointer(out.base), gridDims(batch, rowStride: out.rowStride, colStride: out.colStride),
                       elementSize: out.dtype.size, taken: &taken)
}

func validateCorrection(_ batch: Batch, config: CorrectionConfig, outputs: CorrectionOutputs,
                        rowRecords: CorrectionRowsBuffer?) -> Status {
    withExtentList { taken in
        var status = checkBatch(batch, into: &taken)
        if status != .ok { return status }
        guard !batch.source.givesValues else { return .badInputs }
        status = checkCorrectionConfig(config, weightsWritten: outputs.weights.base != nil)
        if status != .ok { return status }
        guard correctionScratchFits(batch, config: config) else { return .tooLarge }
        let maskDType = batch.mask?.dtype
        status = checkTypedGrid(outputs.mask, batch, allowed: { maskDType == nil || $0 == maskDType }, taken: &taken)
        if status != .ok { return status }
        status = checkTypedGrid(outputs.weights, batch, allowed: \.isFloat, taken: &taken)
        if status != .ok { return status }
        if outputs.keepRow.base != nil && outputs.keepRow.colStride != 0 { return .badStride }
        status = checkOutput(outputs.keepRow, .oneD(batch.rows, outputs.keepRow.rowStride), taken: &taken)
        if status == .ok, let rowRecords { status = checkRowRecords(rowRecords, batch, config, outputs, taken: &taken) }
        return status == .ok ? checkBatchContents(batch) : status
    }
}

/// The config alone: dtypes, clamp, threads, rejections, the weight rule (`weightsWritten`:
/// weights are asked for, which needs a rule).
func checkCorrectionConfig(_ config: CorrectionConfig, weightsWritten: Bool) -> Status {
    guard config.computeDType.isFloat, config.meanDType.isFloat else { return .badDType }
    guard config.clamp > 0, config.threads >= 0 else { return .badOption }  // refuses a NaN clamp
    guard config.rejections.count <= maximumRejections, config.rejections.allSatisfy(\.isValid) else { return .badRejection }
    if let rule = config.weightRule {
        guard rule.isCorrectionRule else { return .badCorrectionWeights }
    } else if weightsWritten || config.normalize {
        return .badOption
    }
    return .ok
}

/// The row-records output: one record per row, the facts of this call, no overlap.
private func checkRowRecords(_ rows: CorrectionRowsBuffer, _ batch: Batch, _ config: CorrectionConfig,
                             _ outputs: CorrectionOutputs, taken: inout ExtentList) -> Status {
    guard rows.base != nil else { return .ok }
    let facts = CorrectionRowsBuffer(base: nil, rows: batch.rows, maskDType: batch.mask?.dtype,
                                     weightsDType: outputs.weights.base == nil ? nil : outputs.weights.dtype,
                                     logProbs: batch.source.secondary != nil)
    guard rows.rows == batch.rows, rows.sameFacts(facts) else { return .badCorrectionRows }
    guard let doubles = sizeProduct(batch.rows, correctionRowWidth(rejections: config.rejections.count)) else { return .badSize }
    return checkOutput(UnsafeRawPointer(rows.base), .oneD(doubles, 1), elementSize: MemoryLayout<Double>.stride, taken: &taken)
}

/// Whether a call's working memory fits the limit every kernel shares (`maximumScratchBytes`):
/// a record per row, one per row and rejection option, and per worker one row of scratch (three
/// doubles and a flag per position, plus a SIMD chunk of room; a packed row is at most `cols`
/// long). Checked before anything is allocated, so a huge valid batch is refused, not aborted.
func correctionScratchFits(_ batch: Batch, config: CorrectionConfig) -> Bool {
    let workers = workerCount(threads: config.threads, rows: batch.rows, positions: batch.gridCount)
    let (span, overflow) = batch.cols.addingReportingOverflow(chunkWidth)
    guard !overflow, let optionCells = sizeProduct(batch.rows, config.rejections.count),
          let optionBytes = scratchBytes(optionCells, of: OptionRecord.self),
          let scratchPerWorker = sizeProduct(span, 3 &* MemoryLayout<Double>.stride &+ MemoryLayout<Bool>.stride),
          let scratch = sizeProduct(scratchPerWorker, workers),
          let records = scratchBytes(batch.rows, of: CorrectionRowRecord.self, plus: optionBytes) else { return false }
    return scratch <= maximumScratchBytes &- records
}

func validateDivide(_ batch: Batch, divisor: Double, weights: TypedOut) -> Status {
    guard weights.base != nil || batch.gridCount == 0 else { return .nullPointer }
    var status = withExtentList { inputs in checkBatch(batch, into: &inputs) }
    if status != .ok { return status }
    guard divisor.isFinite && divisor > 0 else { return .badDivisor }
    // Read and written in place: the weights may overlap nothing but themselves.
    return withExtentList { taken in
        if let offsets = batch.offsets {
            status = checkInput(base: offsets.base, dims: .oneD(batch.rows + 1, offsets.colStride), elementSize: offsets.dtype.size,
                                into: &taken)
            if status != .ok { return status }
        }
        status = checkTypedGrid(weights, batch, allowed: \.isFloat, taken: &taken)
        return status == .ok ? checkBatchContents(batch) : status
    }
}

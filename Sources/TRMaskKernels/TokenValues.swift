/// One estimator at every position of the token grid (SPEC §2): the per-token float32 outputs
/// that the row statistics' max and min equal bit for bit.

/// Validates, then writes `estimator(clamp(value))` at every grid position, valid or not.
/// Packed batches are read as one stream over all `cols` positions (offsets are validated but do
/// not change the result).
public func tokenValues(_ batch: Batch, estimator: Estimator, options: ReductionOptions, out: OutView<Float>) -> Status {
    let status = validateTokenValues(batch, estimator: estimator, options: options, out: out)
    guard status == .ok else { return status }
    var stream = batch
    if batch.layout == .packed {
        stream.rows = batch.cols > 0 ? 1 : 0
        stream.offsets = nil
    }
    if estimator.isBinary {
        binaryTokenValues(stream, estimator: estimator, clamp: BinaryClamp(eps: options.binaryEps),
                          workers: workerCount(threads: options.threads, rows: stream.rows, positions: stream.gridCount), out: out)
        return .ok
    }
    var scan = TokenValueScan(batch: stream, estimator: estimator, clamp: options.clamp.isFinite ? Float(options.clamp) : nil,
                              workers: workerCount(threads: options.threads, rows: stream.rows, positions: stream.gridCount), out: out)
    dispatchReader(stream, to: &scan)
    return .ok
}

struct TokenValueScan: ReaderConsumer {
    let batch: Batch
    let estimator: Estimator
    let clamp: Float?
    let workers: Int
    let out: OutView<Float>

    mutating func run<Reader: RowReader>(_ reader: Reader.Type) {
        guard batch.cols > 0 else { return }  // rows without positions: nothing to read or write
        forEachRowBlock(rows: batch.rows, workers: workers) { _, rows in
            for row in rows {
                // A packed stream is one row starting at position 0.
                let source = Reader(batch, row: row, start: 0, count: batch.cols)
                let grid = GridRow(out, row: row, start: 0, layout: batch.layout)
                var p = 0
                while p < batch.cols {
                    let width = Swift.min(chunkWidth, batch.cols - p)
                    var value = (width == chunkWidth ? source.chunk(at: p) : source.partialChunk(at: p, count: width)).value
                    if let clamp { value = clamped(value, clamp) }
                    let result = estimate(estimator, value)
                    for lane in 0..<width { grid.base[(p &+ lane) &* grid.stride] = result[lane] }
                    p += width
                }
            }
        }
    }
}

/// A binary estimator (SPEC §4.7) at every grid position, from the two log-probabilities, eight
/// at a time by the functions the rules pass uses (so the mask's binary row extremes equal these
/// outputs bit for bit).
private func binaryTokenValues(_ batch: Batch, estimator: Estimator, clamp: BinaryClamp, workers: Int, out: OutView<Float>) {
    guard batch.cols > 0, case .logProbs(let trainView, let rollView) = batch.source else { return }  // validated
    let needs = BinaryNeeds(estimator)
    let (logLow, logHigh) = clamp.lanes
    let wide = trainView.dtype == .f64 || rollView.dtype == .f64
    forEachRowBlock(rows: batch.rows, workers: workers) { _, rows in
        for row in rows {
            let train = RowCursor(trainView, row: row, start: 0, layout: batch.layout)
            let roll = RowCursor(rollView, row: row, start: 0, layout: batch.layout)
            let grid = GridRow(out, row: row, start: 0, layout: batch.layout)
            var p = 0
            while p < batch.cols {
                let width = Swift.min(chunkWidth, batch.cols - p)
                var lt = SIMD8<Double>(repeating: -1), lr = SIMD8<Double>(repeating: -1)
                for lane in 0..<width { (lt[lane], lr[lane]) = (train.double(p &+ lane), roll.double(p &+ lane)) }
                let values = wide ? wideBinaryLanes(lt, lr, needs: needs, clamp: clamp)
                    : binaryLanes(Lanes(lt), Lanes(lr), needs: needs, clamp: clamp, logLow: logLow, logHigh: logHigh)
                let result = values.value(estimator)
                for lane in 0..<width { grid.base[(p &+ lane) &* grid.stride] = result[lane] }
                p &+= width
            }
        }
    }
}

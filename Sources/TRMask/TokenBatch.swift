import TRMaskKernels

/// A strided 2-D view of caller memory: element `[i, t]` is at `base[i * rowStride + t * colStride]`
/// (strides in elements, negative or zero allowed for inputs).
public struct StridedMatrix<Element> {
    public var base: UnsafePointer<Element>?
    public var rows: Int
    public var cols: Int
    public var rowStride: Int
    public var colStride: Int

    public init(base: UnsafePointer<Element>?, rows: Int, cols: Int, rowStride: Int? = nil, colStride: Int = 1) {
        self.base = base
        self.rows = rows
        self.cols = cols
        self.rowStride = rowStride ?? cols
        self.colStride = colStride
    }

    /// A row-major view of a buffer holding `rows * cols` elements.
    public init(_ buffer: UnsafeBufferPointer<Element>, rows: Int, cols: Int) {
        self.init(base: buffer.baseAddress, rows: rows, cols: cols)
    }
}

/// Element types trmask reads through the Swift API, with their dtype.
public protocol TokenScalar { static var dtype: DType { get } }
public typealias DType = TRMaskKernels.DType
extension Float: TokenScalar { public static var dtype: DType { .f32 } }
extension UInt8: TokenScalar { public static var dtype: DType { .u8 } }
extension Int64: TokenScalar { public static var dtype: DType { .i64 } }

/// A batch of rows over caller memory (SPEC §1, §10): where the per-token log-ratios come from and
/// which tokens are valid (mask: nonzero = valid; lengths: the first `lengths[i]` tokens of row
/// `i`). The memory must stay valid and unchanged during each call.
public struct TokenBatch {
    let batch: Batch

    private init(_ batch: Batch) { self.batch = batch }

    /// Padded `[rows, cols]` log-probs of the sampled tokens under the training engine and the
    /// rollout engine: `delta = logpTrain - logpRoll`.
    public static func padded(logpTrain: StridedMatrix<Float>, logpRoll: StridedMatrix<Float>,
                                              mask: StridedMatrix<UInt8>? = nil,
                                              lengths: UnsafeBufferPointer<Int64>? = nil) throws(TRMaskError) -> TokenBatch {
        try padded(logpTrain, source: .logProbs(train: view(logpTrain), roll: view(logpRoll)),
                   others: [("logpRoll", logpRoll.rows, logpRoll.cols)], mask: mask, lengths: lengths)
    }

    /// Padded `[rows, cols]` log-ratios `delta` (training minus rollout).
    public static func padded(logRatio: StridedMatrix<Float>, mask: StridedMatrix<UInt8>? = nil,
                                              lengths: UnsafeBufferPointer<Int64>? = nil) throws(TRMaskError) -> TokenBatch {
        try padded(logRatio, source: .logRatio(view(logRatio)), others: [], mask: mask, lengths: lengths)
    }

    /// Padded `[rows, cols]` precomputed per-token divergences (estimator `.value`).
    public static func padded(values: StridedMatrix<Float>, mask: StridedMatrix<UInt8>? = nil,
                                              lengths: UnsafeBufferPointer<Int64>? = nil) throws(TRMaskError) -> TokenBatch {
        try padded(values, source: .values(view(values)), others: [], mask: mask, lengths: lengths)
    }

    /// Packed rows: 1-D log-probs of all tokens; row `i` is `offsets[i] ..< offsets[i + 1]`.
    public static func packed(logpTrain: UnsafeBufferPointer<Float>, logpRoll: UnsafeBufferPointer<Float>,
                              offsets: UnsafeBufferPointer<Int64>, mask: UnsafeBufferPointer<UInt8>? = nil) throws(TRMaskError) -> TokenBatch {
        guard logpRoll.count == logpTrain.count else { throw TRMaskError(.badSize, argument: "logpRoll") }
        return try packed(count: logpTrain.count, source: .logProbs(train: view(logpTrain), roll: view(logpRoll)), offsets: offsets, mask: mask)
    }

    /// Packed rows of log-ratios.
    public static func packed(logRatio: UnsafeBufferPointer<Float>, offsets: UnsafeBufferPointer<Int64>,
                              mask: UnsafeBufferPointer<UInt8>? = nil) throws(TRMaskError) -> TokenBatch {
        try packed(count: logRatio.count, source: .logRatio(view(logRatio)), offsets: offsets, mask: mask)
    }

    public var rows: Int { batch.rows }
    /// Padded: tokens per row; packed: tokens in all.
    public var cols: Int { batch.cols }
    var gridCount: Int { batch.layout == .padded ? batch.rows * batch.cols : batch.cols }

    private static func view<E: TokenScalar>(_ m: StridedMatrix<E>) -> StridedView {
        StridedView(base: UnsafeRawPointer(m.base), dtype: E.dtype, rowStride: m.rowStride, colStride: m.colStride)
    }

    private static func view<E: TokenScalar>(_ b: UnsafeBufferPointer<E>) -> StridedView {
        StridedView(base: UnsafeRawPointer(b.baseAddress), dtype: E.dtype, rowStride: 0, colStride: 1)
    }

    private static func padded(_ primary: StridedMatrix<Float>, source: Source, others: [(String, Int, Int)],
                                               mask: StridedMatrix<UInt8>?, lengths: UnsafeBufferPointer<Int64>?) throws(TRMaskError) -> TokenBatch {
        for (name, rows, cols) in others where rows != primary.rows || cols != primary.cols {
            throw TRMaskError(.badSize, argument: name)
        }
        if let mask, mask.rows != primary.rows || mask.cols != primary.cols { throw TRMaskError(.badSize, argument: "mask") }
        if let lengths, lengths.count != primary.rows { throw TRMaskError(.badSize, argument: "lengths") }
        return TokenBatch(Batch(layout: .padded, rows: primary.rows, cols: primary.cols, source: source,
                                mask: mask.map(view), lengths: lengths.map(view)))
    }

    private static func packed(count: Int, source: Source, offsets: UnsafeBufferPointer<Int64>,
                               mask: UnsafeBufferPointer<UInt8>?) throws(TRMaskError) -> TokenBatch {
        guard offsets.count >= 1 else { throw TRMaskError(.badOffsets, argument: "offsets") }
        if let mask, mask.count != count { throw TRMaskError(.badSize, argument: "mask") }
        return TokenBatch(Batch(layout: .packed, rows: offsets.count - 1, cols: count, source: source,
                                mask: mask.map(view), offsets: view(offsets)))
    }
}

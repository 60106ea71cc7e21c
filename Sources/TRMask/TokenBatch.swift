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

/// Element types trmask reads through the Swift API, with their dtype. Any of them can be a
/// mask (nonzero = valid).
public protocol TokenScalar { static var dtype: DType { get } }
public typealias DType = TRMaskKernels.DType
extension Float: TokenScalar { public static var dtype: DType { .f32 } }
extension Double: TokenScalar { public static var dtype: DType { .f64 } }
extension UInt8: TokenScalar { public static var dtype: DType { .u8 } }
extension Bool: TokenScalar { public static var dtype: DType { .bool } }
extension Int32: TokenScalar { public static var dtype: DType { .i32 } }
extension Int64: TokenScalar { public static var dtype: DType { .i64 } }
extension Int8: TokenScalar { public static var dtype: DType { .i8 } }
extension Int16: TokenScalar { public static var dtype: DType { .i16 } }
extension UInt16: TokenScalar { public static var dtype: DType { .u16 } }
extension UInt32: TokenScalar { public static var dtype: DType { .u32 } }
extension UInt64: TokenScalar { public static var dtype: DType { .u64 } }

/// Element types of log-probs, log-ratios and values (semantics §10): float32, float64, float16 and
/// bfloat16. Narrow types are widened exactly to float32; delta is one rounding to float32 of
/// `logpTrain - logpRoll` (taken in float64 when either side is float64), so the two sides may
/// differ (a bfloat16 trainer against a float32 rollout). docs/dtypes.md has the details.
public protocol LogProbScalar: TokenScalar {}
extension Float: LogProbScalar {}
extension Double: LogProbScalar {}
extension BFloat16: TokenScalar, LogProbScalar { public static var dtype: DType { .bf16 } }
#if !(os(macOS) && arch(x86_64))
@available(macOS 11.0, iOS 14.0, tvOS 14.0, watchOS 7.0, *)
extension Float16: TokenScalar, LogProbScalar { public static var dtype: DType { .f16 } }
#endif

/// A bfloat16 value (the top sixteen bits of a float32), as trainers store log-probs. Swift has no
/// bfloat16 type: this one holds the bits, for reading caller memory in place.
public struct BFloat16: Equatable, Sendable {
    public var bitPattern: UInt16

    public init(bitPattern: UInt16) { self.bitPattern = bitPattern }

    /// `value` rounded to the nearest bfloat16 (ties to even; NaN stays NaN).
    public init(_ value: Float) {
        let bits = value.bitPattern
        if value.isNaN {
            bitPattern = UInt16(truncatingIfNeeded: bits >> 16) | 0x40
        } else {
            bitPattern = UInt16(truncatingIfNeeded: (bits &+ 0x7fff &+ ((bits >> 16) & 1)) >> 16)
        }
    }

    /// The value, exactly.
    public var float: Float { Float(bitPattern: UInt32(bitPattern) << 16) }
}

/// A validity mask over the token grid of a padded batch: a `StridedMatrix` of any `TokenScalar`
/// (Bool, any fixed-width integer, the float types; nonzero = valid).
public protocol MaskMatrix {
    var rows: Int { get }
    var cols: Int { get }
    var rowStride: Int { get }
    var colStride: Int { get }
    var rawBaseAddress: UnsafeRawPointer? { get }
    var elementDType: DType { get }
}

extension StridedMatrix: MaskMatrix where Element: TokenScalar {
    public var rawBaseAddress: UnsafeRawPointer? { UnsafeRawPointer(base) }
    public var elementDType: DType { Element.dtype }
}

/// A validity mask of a packed batch: a buffer of any `TokenScalar` (nonzero = valid).
public protocol MaskBuffer {
    var count: Int { get }
    var rawBaseAddress: UnsafeRawPointer? { get }
    var elementDType: DType { get }
}

extension UnsafeBufferPointer: MaskBuffer where Element: TokenScalar {
    public var rawBaseAddress: UnsafeRawPointer? { UnsafeRawPointer(baseAddress) }
    public var elementDType: DType { Element.dtype }
}

/// A batch of rows over caller memory (semantics §1, §10): where the per-token log-ratios come from and
/// which tokens are valid (mask: nonzero = valid; lengths: the first `lengths[i]` tokens of row
/// `i`). The memory must stay valid and unchanged during each call.
public struct TokenBatch {
    let batch: Batch

    private init(_ batch: Batch) { self.batch = batch }

    /// Padded `[rows, cols]` log-probs of the sampled tokens under the training engine and the
    /// rollout engine: `delta = logpTrain - logpRoll`. The two may have different element types.
    public static func padded<Train: LogProbScalar, Roll: LogProbScalar>(
        logpTrain: StridedMatrix<Train>, logpRoll: StridedMatrix<Roll>, mask: (any MaskMatrix)? = nil,
        lengths: UnsafeBufferPointer<Int64>? = nil) throws(TRMaskError) -> TokenBatch {
        try padded(logpTrain, name: "logpTrain", source: .logProbs(train: view(logpTrain), roll: view(logpRoll)),
                   others: [("logpRoll", logpRoll.rows, logpRoll.cols)], mask: mask, lengths: lengths)
    }

    /// Padded `[rows, cols]` log-ratios `delta` (training minus rollout).
    public static func padded<Element: LogProbScalar>(logRatio: StridedMatrix<Element>, mask: (any MaskMatrix)? = nil,
                                                      lengths: UnsafeBufferPointer<Int64>? = nil) throws(TRMaskError) -> TokenBatch {
        try padded(logRatio, name: "logRatio", source: .logRatio(view(logRatio)), others: [], mask: mask, lengths: lengths)
    }

    /// Padded `[rows, cols]` precomputed per-token divergences (estimator `.value`).
    public static func padded<Element: LogProbScalar>(values: StridedMatrix<Element>, mask: (any MaskMatrix)? = nil,
                                                      lengths: UnsafeBufferPointer<Int64>? = nil) throws(TRMaskError) -> TokenBatch {
        try padded(values, name: "values", source: .values(view(values)), others: [], mask: mask, lengths: lengths)
    }

    /// Packed rows: 1-D log-probs of all tokens; row `i` is `offsets[i] ..< offsets[i + 1]`.
    public static func packed<Train: LogProbScalar, Roll: LogProbScalar>(
        logpTrain: UnsafeBufferPointer<Train>, logpRoll: UnsafeBufferPointer<Roll>, offsets: UnsafeBufferPointer<Int64>,
        mask: (any MaskBuffer)? = nil, lengths: UnsafeBufferPointer<Int64>? = nil) throws(TRMaskError) -> TokenBatch {
        guard logpRoll.count == logpTrain.count else { throw TRMaskError(.badSize, argument: "logpRoll") }
        return try packed(count: logpTrain.count, source: .logProbs(train: view(logpTrain), roll: view(logpRoll)),
                          offsets: offsets, mask: mask, lengths: lengths)
    }

    /// Packed rows of log-ratios.
    public static func packed<Element: LogProbScalar>(logRatio: UnsafeBufferPointer<Element>, offsets: UnsafeBufferPointer<Int64>,
                                                      mask: (any MaskBuffer)? = nil,
                                                      lengths: UnsafeBufferPointer<Int64>? = nil) throws(TRMaskError) -> TokenBatch {
        try packed(count: logRatio.count, source: .logRatio(view(logRatio)), offsets: offsets, mask: mask, lengths: lengths)
    }

    /// Packed rows of precomputed per-token divergences (estimator `.value`).
    public static func packed<Element: LogProbScalar>(values: UnsafeBufferPointer<Element>, offsets: UnsafeBufferPointer<Int64>,
                                                      mask: (any MaskBuffer)? = nil,
                                                      lengths: UnsafeBufferPointer<Int64>? = nil) throws(TRMaskError) -> TokenBatch {
        try packed(count: values.count, source: .values(view(values)), offsets: offsets, mask: mask, lengths: lengths)
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

    /// `name`: the primary matrix's argument, named by the error when its sizes are negative or
    /// their product overflows (the outputs are sized from them before any kernel validates).
    private static func padded<Primary>(_ primary: StridedMatrix<Primary>, name: String, source: Source,
                                        others: [(String, Int, Int)], mask: (any MaskMatrix)?,
                                        lengths: UnsafeBufferPointer<Int64>?) throws(TRMaskError) -> TokenBatch {
        _ = try checkedPositions(rows: primary.rows, cols: primary.cols, argument: name)
        for (name, rows, cols) in others where rows != primary.rows || cols != primary.cols {
            throw TRMaskError(.badSize, argument: name)
        }
        if let mask, mask.rows != primary.rows || mask.cols != primary.cols { throw TRMaskError(.badSize, argument: "mask") }
        if let lengths, lengths.count != primary.rows { throw TRMaskError(.badSize, argument: "lengths") }
        let maskView = mask.map {
            StridedView(base: $0.rawBaseAddress, dtype: $0.elementDType, rowStride: $0.rowStride, colStride: $0.colStride)
        }
        return TokenBatch(Batch(layout: .padded, rows: primary.rows, cols: primary.cols, source: source,
                                mask: maskView, lengths: lengths.map(view)))
    }

    private static func packed(count: Int, source: Source, offsets: UnsafeBufferPointer<Int64>, mask: (any MaskBuffer)?,
                               lengths: UnsafeBufferPointer<Int64>?) throws(TRMaskError) -> TokenBatch {
        guard offsets.count >= 1 else { throw TRMaskError(.badOffsets, argument: "offsets") }
        if let mask, mask.count != count { throw TRMaskError(.badSize, argument: "mask") }
        if let lengths, lengths.count != offsets.count - 1 { throw TRMaskError(.badSize, argument: "lengths") }
        let maskView = mask.map { StridedView(base: $0.rawBaseAddress, dtype: $0.elementDType, rowStride: 0, colStride: 1) }
        return TokenBatch(Batch(layout: .packed, rows: offsets.count - 1, cols: count, source: source,
                                mask: maskView, lengths: lengths.map(view), offsets: view(offsets)))
    }
}

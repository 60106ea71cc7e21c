/// Inputs of the per-position divergence kernels (SPEC §6): a grid of positions `[rows, cols]`
/// (`[B, T]`, or `[N, 1]` for a flat `[N, V]` tensor), each with a vector along a third axis
/// (the vocabulary, or the top-k entries), and the shared validation of those inputs.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A strided 3-D input `[rows, cols, depth]`: element `[i, t, v]` is at
/// `base + (i * rowStride + t * colStride + v * depthStride) * dtype.size`. Strides count elements
/// and may be negative or zero.
public struct GridView3: @unchecked Sendable {
    public var base: UnsafeRawPointer?
    public var dtype: DType
    public var rowStride: Int
    public var colStride: Int
    public var depthStride: Int

    public init(base: UnsafeRawPointer?, dtype: DType, rowStride: Int, colStride: Int, depthStride: Int) {
        self.base = base
        self.dtype = dtype
        self.rowStride = rowStride
        self.colStride = colStride
        self.depthStride = depthStride
    }

    /// Address of element `[row, col, 0]` (validated views only).
    @inline(__always)
    func origin(row: Int, col: Int) -> UnsafeRawPointer {
        base.unsafelyUnwrapped + (row &* rowStride &+ col &* colStride) &* dtype.size
    }
}

/// Options of the logit kernels.
public struct LogitOptions: Sendable {
    /// `tau > 0`: `p = softmax(a / tau)`, `q = softmax(b / tau)`.
    public var temperature: Double
    /// 0 = automatic. Results do not depend on it.
    public var threads: Int

    public init(temperature: Double = 1, threads: Int = 0) {
        self.temperature = temperature
        self.threads = threads
    }

    /// `1 / tau` rounded to float32 once; both distributions use this same value, so the kernels
    /// compute the divergence at temperature `1 / Float(1 / tau)` (relative change below 6e-8).
    var inverseTemperature: Float { Float(1 / temperature) }
}

/// Temperature, threads; SPEC §11.
func checkLogitOptions(_ options: LogitOptions) -> Status {
    let t = options.temperature
    guard t.isFinite, t > 0 else { return .badTemperature }
    let inverse = options.inverseTemperature
    guard inverse.isFinite, inverse.isNormal else { return .badTemperature }
    guard options.threads >= 0 else { return .badOption }
    return .ok
}

/// Sizes of the position grid: no negative sizes, no overflowing products.
func checkGrid(rows: Int, cols: Int, depth: Int) -> Status {
    sizeProduct(rows, cols, depth) == nil ? .badSize : .ok
}

/// A 3-D input of one of `dtypes` over `[rows, cols, depth]`.
func checkView3(_ view: GridView3, rows: Int, cols: Int, depth: Int, dtypes: [DType], into extents: inout ExtentList) -> Status {
    guard dtypes.contains(view.dtype) else { return .badDType }
    return checkInput(base: view.base, dims: Dims(outer: (rows, view.rowStride), inner: (cols, view.colStride), deep: (depth, view.depthStride)),
                      elementSize: view.dtype.size, into: &extents)
}

/// A 2-D input over the position grid (mask, token ids).
func checkGridView(_ view: StridedView, rows: Int, cols: Int, dtypeOK: Bool, into extents: inout ExtentList) -> Status {
    guard dtypeOK else { return .badDType }
    return checkInput(base: view.base, dims: Dims(outer: (rows, view.rowStride), inner: (cols, view.colStride)),
                      elementSize: view.dtype.size, into: &extents)
}

/// Whether position `[row, col]` counts (no mask: every position).
@inline(__always)
func positionIsValid(_ mask: StridedView?, row: Int, col: Int) -> Bool {
    guard let mask else { return true }
    return mask.address(row: row, col: col).load(as: UInt8.self) != 0
}

/// An integer element of a validated I32/I64 view.
@inline(__always)
func loadIndex(_ address: UnsafeRawPointer, _ dtype: DType) -> Int {
    dtype == .i64 ? Int(address.loadUnaligned(as: Int64.self)) : Int(address.loadUnaligned(as: Int32.self))
}

/// One position's vector along the last axis, read sixteen elements at a time. One type per
/// memory layout, so each gets its own specialised loop; all give the same values.
protocol VectorRow {
    init(_ base: UnsafeRawPointer, stride: Int, dtype: DType)
    /// Elements `v ..< v + chunkWidth`, widened exactly to float32.
    func chunk(_ v: Int) -> Lanes
    /// Element `v`, widened exactly to float32.
    func scalar(_ v: Int) -> Float
}

/// Contiguous float32.
struct F32Row: VectorRow {
    let base: UnsafeRawPointer
    init(_ base: UnsafeRawPointer, stride: Int, dtype: DType) { self.base = base }
    @inline(__always) func chunk(_ v: Int) -> Lanes { (base + v &* 4).loadUnaligned(as: Lanes.self) }
    @inline(__always) func scalar(_ v: Int) -> Float { (base + v &* 4).loadUnaligned(as: Float.self) }
}

/// Contiguous bfloat16: the top half of a float32 (the lane loop compiles to a zero-extending
/// load and a shift).
struct BF16Row: VectorRow {
    let base: UnsafeRawPointer
    init(_ base: UnsafeRawPointer, stride: Int, dtype: DType) { self.base = base }
    @inline(__always)
    func chunk(_ v: Int) -> Lanes {
        let half = (base + v &* 2).loadUnaligned(as: SIMD8<UInt16>.self)
        var wide = SIMD8<UInt32>()
        for lane in 0..<chunkWidth { wide[lane] = UInt32(half[lane]) }
        return unsafeBitCast(wide &<< 16, to: Lanes.self)
    }
    @inline(__always) func scalar(_ v: Int) -> Float { loadFloat(base + v &* 2, .bf16) }
}

/// Contiguous float16 (F16C `vcvtph2ps` on x86-64-v3).
struct F16Row: VectorRow {
    let base: UnsafeRawPointer
    init(_ base: UnsafeRawPointer, stride: Int, dtype: DType) { self.base = base }
    @inline(__always)
    func chunk(_ v: Int) -> Lanes {
        var result = Lanes()
        #if arch(x86_64) && os(macOS)
        for lane in 0..<chunkWidth { result[lane] = scalar(v &+ lane) }
        #else
        let half = (base + v &* 2).loadUnaligned(as: SIMD8<Float16>.self)
        for lane in 0..<chunkWidth { result[lane] = Float(half[lane]) }
        #endif
        return result
    }
    @inline(__always) func scalar(_ v: Int) -> Float { loadFloat(base + v &* 2, .f16) }
}

/// Any float dtype and stride (transposed, reversed or broadcast vocabulary axes): one scalar
/// load per lane.
struct GatherRow: VectorRow {
    let base: UnsafeRawPointer
    let stride: Int
    let dtype: DType
    init(_ base: UnsafeRawPointer, stride: Int, dtype: DType) {
        self.base = base
        self.stride = stride
        self.dtype = dtype
    }
    @inline(__always)
    func chunk(_ v: Int) -> Lanes {
        var result = Lanes()
        for lane in 0..<chunkWidth { result[lane] = scalar(v &+ lane) }
        return result
    }
    @inline(__always) func scalar(_ v: Int) -> Float { loadFloat(base + v &* stride &* dtype.size, dtype) }
}

/// The row reader for a 3-D view: a contiguous one when the last axis has stride 1.
enum RowKind {
    case f32, bf16, f16, gather

    init(_ view: GridView3) {
        switch (view.dtype, view.depthStride) {
        case (.f32, 1): self = .f32
        case (.bf16, 1): self = .bf16
        case (.f16, 1): self = .f16
        default: self = .gather
        }
    }
}

/// A kernel over one row reader type.
protocol SingleRowConsumer {
    mutating func run<R: VectorRow>(_ r: R.Type)
}

/// A kernel over a pair of row reader types.
protocol PairRowConsumer {
    mutating func run<A: VectorRow, B: VectorRow>(_ a: A.Type, _ b: B.Type)
}

func dispatchRow<C: SingleRowConsumer>(_ kind: RowKind, to consumer: inout C) {
    switch kind {
    case .f32: consumer.run(F32Row.self)
    case .bf16: consumer.run(BF16Row.self)
    case .f16: consumer.run(F16Row.self)
    case .gather: consumer.run(GatherRow.self)
    }
}

/// Binds the second reader once the first is known.
private struct SecondRow<A: VectorRow, C: PairRowConsumer>: SingleRowConsumer {
    var consumer: C
    mutating func run<B: VectorRow>(_ r: B.Type) { consumer.run(A.self, B.self) }
}

private struct FirstRow<C: PairRowConsumer>: SingleRowConsumer {
    var consumer: C
    let second: RowKind
    mutating func run<A: VectorRow>(_ r: A.Type) {
        var bind = SecondRow<A, C>(consumer: consumer)
        dispatchRow(second, to: &bind)
        consumer = bind.consumer
    }
}

func dispatchRows<C: PairRowConsumer>(_ first: RowKind, _ second: RowKind, to consumer: inout C) {
    var bind = FirstRow(consumer: consumer, second: second)
    dispatchRow(first, to: &bind)
    consumer = bind.consumer
}

/// `log(e^x + e^y)` without overflow; `-inf` is the identity.
@inline(__always)
func logAddExp(_ x: Double, _ y: Double) -> Double {
    if x == -.infinity { return y }
    if y == -.infinity { return x }
    return x > y ? x + log1p(exp(y - x)) : y + log1p(exp(x - y))
}

/// Chunk readers: how a row's stream values and mask reach the scan. One reader type per memory
/// layout and element type, so each gets its own specialised loop; all define delta the same way
/// (`TokenElement.delta`), so every layout and dtype combination gives the same bits for the same
/// values.

import TRMaskPrefetch

/// A reader positioned at one row.
protocol RowReader: ChunkReader {
    /// `count`: positions of the row the scan will read (full chunks end at or before it).
    init(_ batch: Batch, row: Int, start: Int, count: Int)
    /// Whether this reader can read every row of `batch`.
    static func accepts(_ batch: Batch) -> Bool
    /// Whether `plainChunk` reads this row: then a full chunk takes only vector loads, no calls.
    var hasPlainChunks: Bool { get }
    /// `chunk(at:)` where `hasPlainChunks`.
    func plainChunk(at p: Int) -> (value: Lanes, valid: LaneMask)
    /// Asks the caches for the group of `GroupSums.width` positions at `p` (a hint: addresses
    /// past the row are harmless, a prefetch never faults).
    func prefetchGroup(at p: Int)
}

extension RowReader {
    var hasPlainChunks: Bool { false }
    func plainChunk(at p: Int) -> (value: Lanes, valid: LaneMask) { chunk(at: p) }
    func prefetchGroup(at p: Int) {}
}

/// An element type of log-probs, log-ratios or values.
protocol TokenElement {
    static var dtype: DType { get }
    /// Bytes per element (`dtype.size` as a literal: `DType.size` is a call from the hot loops,
    /// which the compiler did not inline).
    static var size: Int { get }
    /// Differences are taken in float64 (then rounded once to float32) when either side is wide.
    static var wide: Bool { get }
    /// Eight consecutive elements as float32 (exact, but float64 rounds once).
    static func load(_ p: UnsafeRawPointer) -> Lanes
    /// Eight consecutive elements as float64 (exact).
    static func loadWide(_ p: UnsafeRawPointer) -> SIMD8<Double>
    /// One element as float64 (exact).
    static func one(_ p: UnsafeRawPointer) -> Double
}

extension TokenElement {
    /// Elements 0, 2, ..., 14 from `p` as float32: reads elements 0 ... 14 and none past them.
    @inline(__always)
    static func loadEven(_ p: UnsafeRawPointer) -> Lanes { evenElements(load(p), load(p + 7 &* size)) }
}

/// Elements 0, 2, ..., 14 of a run of fifteen, from its first eight (`low`, elements 0-7) and
/// its last eight (`high`, elements 7-14): two loads that never reach past the run's last
/// element, and one two-source shuffle.
@inline(__always)
func evenElements<T: SIMDScalar>(_ low: SIMD8<T>, _ high: SIMD8<T>) -> SIMD8<T> {
    SIMD8(lowHalf: low.evenHalf, highHalf: high.oddHalf)
}

extension Float: TokenElement {
    static var dtype: DType { @inline(__always) get { .f32 } }
    static var size: Int { @inline(__always) get { 4 } }
    static var wide: Bool { false }
    @inline(__always) static func load(_ p: UnsafeRawPointer) -> Lanes { p.loadUnaligned(as: Lanes.self) }
    @inline(__always) static func loadWide(_ p: UnsafeRawPointer) -> SIMD8<Double> { widen(load(p)) }
    @inline(__always) static func one(_ p: UnsafeRawPointer) -> Double { Double(p.loadUnaligned(as: Float.self)) }
}

extension Double: TokenElement {
    static var dtype: DType { @inline(__always) get { .f64 } }
    static var size: Int { @inline(__always) get { 8 } }
    static var wide: Bool { true }
    @inline(__always) static func load(_ p: UnsafeRawPointer) -> Lanes { narrow(loadWide(p)) }
    @inline(__always) static func loadWide(_ p: UnsafeRawPointer) -> SIMD8<Double> { p.loadUnaligned(as: SIMD8<Double>.self) }
    @inline(__always) static func one(_ p: UnsafeRawPointer) -> Double { p.loadUnaligned(as: Double.self) }
}

/// IEEE binary16 (the bits; converted without relying on the platform's Float16 support).
enum Half: TokenElement {
    static var dtype: DType { @inline(__always) get { .f16 } }
    static var size: Int { @inline(__always) get { 2 } }
    static var wide: Bool { false }
    @inline(__always) static func load(_ p: UnsafeRawPointer) -> Lanes { halves(p.loadUnaligned(as: SIMD8<UInt16>.self)) }
    @inline(__always) static func loadWide(_ p: UnsafeRawPointer) -> SIMD8<Double> { widen(load(p)) }
    @inline(__always) static func one(_ p: UnsafeRawPointer) -> Double { Double(halfToFloat(p.loadUnaligned(as: UInt16.self))) }

    @inline(__always)
    static func halves(_ bits: SIMD8<UInt16>) -> Lanes {
        var lanes = Lanes()
        for lane in 0..<chunkWidth { lanes[lane] = halfToFloat(bits[lane]) }
        return lanes
    }
}

/// bfloat16: the top half of a float32.
enum BFloat16: TokenElement {
    static var dtype: DType { @inline(__always) get { .bf16 } }
    static var size: Int { @inline(__always) get { 2 } }
    static var wide: Bool { false }
    @inline(__always) static func load(_ p: UnsafeRawPointer) -> Lanes { widen16(p.loadUnaligned(as: SIMD8<UInt16>.self)) }
    @inline(__always) static func loadWide(_ p: UnsafeRawPointer) -> SIMD8<Double> { widen(load(p)) }
    @inline(__always) static func one(_ p: UnsafeRawPointer) -> Double {
        Double(Float(bitPattern: UInt32(p.loadUnaligned(as: UInt16.self)) << 16))
    }

    @inline(__always)
    static func widen16(_ bits: SIMD8<UInt16>) -> Lanes {
        var words = SIMD8<UInt32>()
        for lane in 0..<chunkWidth { words[lane] = UInt32(bits[lane]) &<< 16 }
        return Lanes(bitPattern: words)
    }
}

@inline(__always)
func widen(_ x: Lanes) -> SIMD8<Double> {
    var wide = SIMD8<Double>()
    for lane in 0..<chunkWidth { wide[lane] = Double(x[lane]) }
    return wide
}

@inline(__always)
func narrow(_ x: SIMD8<Double>) -> Lanes {
    var lanes = Lanes()
    for lane in 0..<chunkWidth { lanes[lane] = Float(x[lane]) }
    return lanes
}

/// `train - roll` as float32: one rounding of the exact difference. Float64 operands are
/// subtracted in float64 first; narrower ones are widened exactly and subtracted in float32.
@inline(__always)
func delta<A: TokenElement, B: TokenElement>(_ train: UnsafeRawPointer, _ roll: UnsafeRawPointer, _: A.Type, _: B.Type) -> Lanes {
    if A.wide || B.wide { return narrow(A.loadWide(train) - B.loadWide(roll)) }
    return A.load(train) - B.load(roll)
}

@inline(__always)
func deltaOne<A: TokenElement, B: TokenElement>(_ train: UnsafeRawPointer, _ roll: UnsafeRawPointer, _: A.Type, _: B.Type) -> Float {
    if A.wide || B.wide { return Float(A.one(train) - B.one(roll)) }
    return Float(A.one(train)) - Float(B.one(roll))
}

/// Eight mask bytes as lane validity. Written as a float comparison: it compiles to one byte
/// compare and a sign extension, where the integer spelling becomes a lane loop on AVX2.
@inline(__always)
func byteMask(_ bytes: SIMD8<UInt8>) -> LaneMask {
    var lanes = Lanes()
    for lane in 0..<chunkWidth { lanes[lane] = Float(bytes[lane]) }
    return laneMask(lanes .!= 0)
}

/// The validity mask of one row: absent (all valid), bytes at stride 1 or 2 (vector loads that
/// never read past the chunk's last byte), or anything else (nonzero = valid, read one element
/// per lane, out of line). The mode is fixed per call, so the switch on it is always predicted,
/// and the hot loop holds only the vector paths.
struct MaskCursor {
    enum Mode: UInt8 { case absent, unitBytes, evenBytes, perElement }

    let mode: Mode
    let base: UnsafeRawPointer?
    let stride: Int
    let dtype: DType

    @inline(__always)
    init(_ batch: Batch, row: Int, start: Int) {
        guard let mask = batch.mask else {
            (mode, base, stride, dtype) = (.absent, nil, 0, .u8)
            return
        }
        let cursor = RowCursor(mask, row: row, start: start, layout: batch.layout)
        let bytes = cursor.dtype == .u8 || cursor.dtype == .bool
        mode = bytes && cursor.stride == 1 ? .unitBytes : bytes && cursor.stride == 2 ? .evenBytes : .perElement
        (base, stride, dtype) = (cursor.base, cursor.stride, cursor.dtype)
    }

    @inline(__always)
    func chunk(at p: Int) -> LaneMask {
        switch mode {
        case .absent, .unitBytes: return plainChunk(at: p)
        case .evenBytes: return evenChunk(at: p)
        case .perElement: return elements(at: p, count: chunkWidth)
        }
    }

    /// The mask bytes of the group at `p` (vector modes only).
    @inline(__always)
    func prefetchGroup(at p: Int) {
        switch mode {
        case .unitBytes: trm_prefetch(base.unsafelyUnwrapped + p)
        case .evenBytes: prefetchLines(base.unsafelyUnwrapped + 2 &* p, bytes: 2 &* GroupSums.width)
        case .absent, .perElement: break
        }
    }

    @inline(__always)
    func partialChunk(at p: Int, count: Int) -> LaneMask {
        mode == .absent ? firstLanes(count) : elements(at: p, count: count)
    }

    /// No mask, or bytes at unit stride: the modes `plainChunk` handles (a two-way choice: the
    /// unit-stride hot loop carries no third case).
    var isPlain: Bool { mode == .absent || mode == .unitBytes }

    @inline(__always)
    func plainChunk(at p: Int) -> LaneMask {
        mode == .absent ? LaneMask(repeating: .max) : byteMask((base.unsafelyUnwrapped + p).loadUnaligned(as: SIMD8<UInt8>.self))
    }

    /// No mask, or bytes at stride 2: the modes `evenChunk` handles (every other column).
    var isEven: Bool { mode == .absent || mode == .evenBytes }

    @inline(__always)
    func evenChunk(at p: Int) -> LaneMask {
        guard mode != .absent else { return LaneMask(repeating: .max) }
        let bytes = base.unsafelyUnwrapped + 2 &* p
        return byteMask(evenElements(bytes.loadUnaligned(as: SIMD8<UInt8>.self), (bytes + 7).loadUnaligned(as: SIMD8<UInt8>.self)))
    }

    /// One element per lane, any dtype; lanes past `count` are invalid.
    @inline(never)
    func elements(at p: Int, count: Int) -> LaneMask {
        var lanes = Lanes()
        for lane in 0..<count { lanes[lane] = loadFloat(base.unsafelyUnwrapped + (p &+ lane) &* stride &* dtype.size, dtype) }
        return laneMask(lanes .!= 0)
    }
}

/// Asks the caches for `bytes` bytes from `start`: one hint per 64-byte line.
@inline(__always)
func prefetchLines(_ start: UnsafeRawPointer, bytes: Int) {
    for line in stride(from: 0, to: bytes, by: 64) { trm_prefetch(start + line) }
}

/// Whether a stream has two sides (log-probs) or one (log-ratio, values).
protocol StreamKind { static var paired: Bool { get } }
enum Paired: StreamKind { static var paired: Bool { true } }
enum Single: StreamKind { static var paired: Bool { false } }

/// Unit column stride: whole chunks are vector loads. `A` is the first stream's element type, `B`
/// the second's (log-probs only).
struct UnitReader<A: TokenElement, B: TokenElement, Kind: StreamKind>: RowReader {
    let first: UnsafeRawPointer
    let second: UnsafeRawPointer
    let count: Int
    let mask: MaskCursor

    @inline(__always)
    init(_ batch: Batch, row: Int, start: Int, count: Int) {
        first = RowCursor(batch.source.primary, row: row, start: start, layout: batch.layout).base
        // accepts() checked that a paired source has a second view.
        second = Kind.paired ? RowCursor(batch.source.secondary.unsafelyUnwrapped, row: row, start: start, layout: batch.layout).base : first
        self.count = count
        mask = MaskCursor(batch, row: row, start: start)
    }

    static func accepts(_ batch: Batch) -> Bool {
        let primary = batch.source.primary
        guard primary.dtype == A.dtype, primary.colStride == 1 else { return false }
        guard let secondary = batch.source.secondary else { return !Kind.paired }
        return Kind.paired && secondary.dtype == B.dtype && secondary.colStride == 1
    }

    @inline(__always)
    func chunk(at p: Int) -> (value: Lanes, valid: LaneMask) {
        (values(at: p), mask.chunk(at: p))
    }

    var hasPlainChunks: Bool { mask.isPlain }

    @inline(__always)
    func plainChunk(at p: Int) -> (value: Lanes, valid: LaneMask) {
        (values(at: p), mask.plainChunk(at: p))
    }

    @inline(__always)
    func prefetchGroup(at p: Int) {
        prefetchLines(first + p &* A.size, bytes: GroupSums.width &* A.size)
        if Kind.paired { prefetchLines(second + p &* B.size, bytes: GroupSums.width &* B.size) }
        mask.prefetchGroup(at: p)
    }

    @inline(__always)
    func values(at p: Int) -> Lanes {
        let a = first + p &* A.size
        return Kind.paired ? delta(a, second + p &* B.size, A.self, B.self) : A.load(a)
    }

    @inline(__always)
    func partialChunk(at p: Int, count: Int) -> (value: Lanes, valid: LaneMask) {
        var value = Lanes()
        for lane in 0..<count {
            let a = first + (p &+ lane) &* A.size
            value[lane] = Kind.paired ? deltaOne(a, second + (p &+ lane) &* B.size, A.self, B.self) : Float(A.one(a))
        }
        return (value, mask.partialChunk(at: p, count: count))
    }
}

/// Any column stride with one element type on both sides: stride 2 (every other column) reads
/// vectors (two loads of eight elements per chunk, never past the chunk's last element) and, with
/// a mask at stride 2 or none, takes the scan's hot loop; other strides read one element per lane.
struct StridedReader<E: TokenElement, Kind: StreamKind>: RowReader {
    let first: UnsafeRawPointer
    let second: UnsafeRawPointer
    let stride: Int
    let secondStride: Int
    /// Stride 2 on every stream (float64 pairs excluded: they subtract in float64, per element).
    let evenVectors: Bool
    let mask: MaskCursor

    @inline(__always)
    init(_ batch: Batch, row: Int, start: Int, count: Int) {
        let primary = RowCursor(batch.source.primary, row: row, start: start, layout: batch.layout)
        let secondary = Kind.paired ? RowCursor(batch.source.secondary.unsafelyUnwrapped, row: row, start: start, layout: batch.layout) : primary
        first = primary.base
        second = secondary.base
        stride = primary.stride
        secondStride = secondary.stride
        evenVectors = stride == 2 && (!Kind.paired || (secondStride == 2 && !E.wide))
        mask = MaskCursor(batch, row: row, start: start)
    }

    static func accepts(_ batch: Batch) -> Bool {
        guard batch.source.primary.dtype == E.dtype else { return false }
        guard let secondary = batch.source.secondary else { return !Kind.paired }
        return Kind.paired && secondary.dtype == E.dtype
    }

    @inline(__always)
    func chunk(at p: Int) -> (value: Lanes, valid: LaneMask) {
        (evenVectors ? evenValues(at: p) : gather(at: p, count: chunkWidth), mask.chunk(at: p))
    }

    var hasPlainChunks: Bool { evenVectors && mask.isEven }

    @inline(__always)
    func plainChunk(at p: Int) -> (value: Lanes, valid: LaneMask) {
        (evenValues(at: p), mask.evenChunk(at: p))
    }

    @inline(__always)
    func prefetchGroup(at p: Int) {
        // Stride 2 (the only reader with plain chunks): a group spans twice its width.
        prefetchLines(first + 2 &* p &* E.size, bytes: 2 &* GroupSums.width &* E.size)
        if Kind.paired { prefetchLines(second + 2 &* p &* E.size, bytes: 2 &* GroupSums.width &* E.size) }
        mask.prefetchGroup(at: p)
    }

    @inline(__always)
    func evenValues(at p: Int) -> Lanes {
        let a = E.loadEven(first + 2 &* p &* E.size)
        return Kind.paired ? a - E.loadEven(second + 2 &* p &* E.size) : a
    }

    @inline(__always)
    func partialChunk(at p: Int, count: Int) -> (value: Lanes, valid: LaneMask) {
        (gather(at: p, count: count), mask.partialChunk(at: p, count: count))
    }

    @inline(__always)
    func gather(at p: Int, count: Int) -> Lanes {
        var value = Lanes()
        for lane in 0..<count {
            let a = first + (p &+ lane) &* stride &* E.size
            value[lane] = Kind.paired ? deltaOne(a, second + (p &+ lane) &* secondStride &* E.size, E.self, E.self) : Float(E.one(a))
        }
        return value
    }
}

/// Any layout, any dtype combination, any mask dtype: one scalar load per lane. The fallback
/// every batch accepts.
struct GatherReader: RowReader {
    let first: RowCursor
    let second: RowCursor?
    let mask: MaskCursor

    init(_ batch: Batch, row: Int, start: Int, count: Int) {
        first = RowCursor(batch.source.primary, row: row, start: start, layout: batch.layout)
        second = batch.source.secondary.map { RowCursor($0, row: row, start: start, layout: batch.layout) }
        mask = MaskCursor(batch, row: row, start: start)
    }

    static func accepts(_ batch: Batch) -> Bool { true }

    @inline(__always)
    func value(_ p: Int) -> Float {
        guard let second else { return first.float(p) }
        if first.dtype == .f64 || second.dtype == .f64 { return Float(first.double(p) - second.double(p)) }
        return first.float(p) - second.float(p)
    }

    @inline(__always)
    func chunk(at p: Int) -> (value: Lanes, valid: LaneMask) {
        partialChunk(at: p, count: chunkWidth)
    }

    @inline(__always)
    func partialChunk(at p: Int, count: Int) -> (value: Lanes, valid: LaneMask) {
        var values = Lanes()
        for lane in 0..<count { values[lane] = value(p &+ lane) }
        return (values, mask.partialChunk(at: p, count: count))
    }
}

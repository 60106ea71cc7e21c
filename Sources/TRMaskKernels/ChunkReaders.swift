/// Chunk readers: how a row's stream values and mask reach the scan, one type per memory layout
/// so each gets its own specialised loop. All compute delta the same way (`deltaOf`), so every
/// layout gives the same bits.

/// A reader positioned at one row.
protocol RowReader: ChunkReader {
    init(_ batch: Batch, row: Int, start: Int)
    /// Whether this reader can read every row of `batch`.
    static func accepts(_ batch: Batch) -> Bool
}

/// `logp_train - logp_roll` as float32: one rounding of the exact difference (float64 inputs
/// are subtracted in float64 first).
@inline(__always)
func deltaOf(_ train: RowCursor, _ roll: RowCursor, _ p: Int) -> Float {
    if train.dtype == .f64 || roll.dtype == .f64 {
        return Float(train.double(p) - roll.double(p))
    }
    return train.float(p) - roll.float(p)
}

/// Any layout, any dtype: one scalar load per lane. The fallback every batch accepts.
struct GatherReader: RowReader {
    let first: RowCursor
    let second: RowCursor?
    let mask: RowCursor?

    init(_ batch: Batch, row: Int, start: Int) {
        first = RowCursor(batch.source.primary, row: row, start: start, layout: batch.layout)
        second = batch.source.secondary.map { RowCursor($0, row: row, start: start, layout: batch.layout) }
        mask = batch.mask.map { RowCursor($0, row: row, start: start, layout: batch.layout) }
    }

    static func accepts(_ batch: Batch) -> Bool { true }

    @inline(__always)
    func value(_ p: Int) -> Float {
        if let second { return deltaOf(first, second, p) }
        return first.float(p)
    }

    @inline(__always)
    func isValid(_ p: Int) -> Bool {
        guard let mask else { return true }
        return mask.float(p) != 0
    }

    @inline(__always)
    func chunk(at p: Int) -> (value: Lanes, valid: LaneMask) {
        partialChunk(at: p, count: chunkWidth)
    }

    @inline(__always)
    func partialChunk(at p: Int, count: Int) -> (value: Lanes, valid: LaneMask) {
        var values = Lanes(repeating: 0)
        var valid = Lanes(repeating: 0)
        for lane in 0..<count {
            values[lane] = value(p + lane)
            valid[lane] = isValid(p + lane) ? 1 : 0
        }
        return (values, laneMask(valid .!= 0))
    }
}

/// Eight mask bytes as lane validity. Written as a float comparison: it compiles to one byte
/// compare and a sign extension, where the integer spelling becomes a lane loop on AVX2.
@inline(__always)
func byteMask(_ bytes: SIMD8<UInt8>) -> LaneMask {
    var lanes = Lanes()
    for lane in 0..<chunkWidth { lanes[lane] = Float(bytes[lane]) }
    return laneMask(lanes .!= 0)
}

/// Mask access for the contiguous readers.
protocol MaskLoader {
    init(_ batch: Batch, row: Int, start: Int)
    static func accepts(_ batch: Batch) -> Bool
    func chunk(at p: Int) -> LaneMask
    func partialChunk(at p: Int, count: Int) -> LaneMask
}

/// No mask: every position is valid.
struct NoMask: MaskLoader {
    init(_ batch: Batch, row: Int, start: Int) {}
    static func accepts(_ batch: Batch) -> Bool { batch.mask == nil }
    @inline(__always) func chunk(at p: Int) -> LaneMask { LaneMask(repeating: .max) }
    @inline(__always) func partialChunk(at p: Int, count: Int) -> LaneMask { firstLanes(count) }
}

/// A byte mask with unit column stride.
struct ContiguousByteMask: MaskLoader {
    let base: UnsafePointer<UInt8>

    init(_ batch: Batch, row: Int, start: Int) {
        let cursor = RowCursor(batch.mask.unsafelyUnwrapped, row: row, start: start, layout: batch.layout)
        base = cursor.base.assumingMemoryBound(to: UInt8.self)
    }

    static func accepts(_ batch: Batch) -> Bool {
        guard let mask = batch.mask else { return false }
        return mask.dtype.isByteMask && mask.colStride == 1
    }

    @inline(__always)
    func chunk(at p: Int) -> LaneMask {
        byteMask(UnsafeRawPointer(base + p).loadUnaligned(as: SIMD8<UInt8>.self))
    }

    @inline(__always)
    func partialChunk(at p: Int, count: Int) -> LaneMask {
        var bytes = SIMD8<UInt8>()
        for lane in 0..<count { bytes[lane] = base[p + lane] }
        return byteMask(bytes)  // lanes past `count` read 0: invalid
    }
}

/// Float32 log-probs with unit column stride: delta is one vector subtraction.
struct ContiguousPairReader<Mask: MaskLoader>: RowReader {
    let train: UnsafePointer<Float>
    let roll: UnsafePointer<Float>
    let mask: Mask

    init(_ batch: Batch, row: Int, start: Int) {
        // accepts() checked that the source is a pair of float32 views.
        let rollView = batch.source.secondary.unsafelyUnwrapped
        train = RowCursor(batch.source.primary, row: row, start: start, layout: batch.layout).base.assumingMemoryBound(to: Float.self)
        roll = RowCursor(rollView, row: row, start: start, layout: batch.layout).base.assumingMemoryBound(to: Float.self)
        mask = Mask(batch, row: row, start: start)
    }

    static func accepts(_ batch: Batch) -> Bool {
        guard case .logProbs(let train, let roll) = batch.source else { return false }
        return train.dtype == .f32 && roll.dtype == .f32 && train.colStride == 1 && roll.colStride == 1 && Mask.accepts(batch)
    }

    @inline(__always)
    func chunk(at p: Int) -> (value: Lanes, valid: LaneMask) {
        let a = UnsafeRawPointer(train + p).loadUnaligned(as: Lanes.self)
        let b = UnsafeRawPointer(roll + p).loadUnaligned(as: Lanes.self)
        return (a - b, mask.chunk(at: p))
    }

    @inline(__always)
    func partialChunk(at p: Int, count: Int) -> (value: Lanes, valid: LaneMask) {
        var a = Lanes(repeating: 0)
        var b = Lanes(repeating: 0)
        for lane in 0..<count {
            a[lane] = train[p + lane]
            b[lane] = roll[p + lane]
        }
        return (a - b, mask.partialChunk(at: p, count: count))
    }
}

/// A float32 log-ratio or value stream with unit column stride.
struct ContiguousSingleReader<Mask: MaskLoader>: RowReader {
    let values: UnsafePointer<Float>
    let mask: Mask

    init(_ batch: Batch, row: Int, start: Int) {
        values = RowCursor(batch.source.primary, row: row, start: start, layout: batch.layout).base.assumingMemoryBound(to: Float.self)
        mask = Mask(batch, row: row, start: start)
    }

    static func accepts(_ batch: Batch) -> Bool {
        let view = batch.source.primary
        return batch.source.secondary == nil && view.dtype == .f32 && view.colStride == 1 && Mask.accepts(batch)
    }

    @inline(__always)
    func chunk(at p: Int) -> (value: Lanes, valid: LaneMask) {
        (UnsafeRawPointer(values + p).loadUnaligned(as: Lanes.self), mask.chunk(at: p))
    }

    @inline(__always)
    func partialChunk(at p: Int, count: Int) -> (value: Lanes, valid: LaneMask) {
        var v = Lanes(repeating: 0)
        for lane in 0..<count { v[lane] = values[p + lane] }
        return (v, mask.partialChunk(at: p, count: count))
    }
}

/// Element types of the arrays the kernels read (`TRM_DTYPE_*` in the header).
public enum DType: Int32, Sendable, CaseIterable {
    case f32 = 1, f64 = 2, f16 = 3, bf16 = 4, u8 = 5, bool = 6, i32 = 7, i64 = 8
    /// Further integer types, for masks only (nonzero = valid).
    case i8 = 9, i16 = 10, u16 = 11, u32 = 12, u64 = 13

    public var size: Int {
        switch self {
        case .f32, .i32, .u32: 4
        case .f64, .i64, .u64: 8
        case .f16, .bf16, .i16, .u16: 2
        case .u8, .bool, .i8: 1
        }
    }

    var isFloat: Bool { self == .f32 || self == .f64 || self == .f16 || self == .bf16 }
    var isByteMask: Bool { self == .u8 || self == .bool }
    var isIndex: Bool { self == .i32 || self == .i64 }
}

/// A strided input array: the one view type every kernel reads through, so the rules for where
/// element `[i, t]` lives are written once. Strides count elements and may be negative or zero.
/// A view is validated (extent, dtype) before a kernel sees it; kernels then read without checks.
public struct StridedView: @unchecked Sendable {
    public var base: UnsafeRawPointer?
    public var dtype: DType
    public var rowStride: Int
    public var colStride: Int

    public init(base: UnsafeRawPointer?, dtype: DType, rowStride: Int = 0, colStride: Int = 1) {
        self.base = base
        self.dtype = dtype
        self.rowStride = rowStride
        self.colStride = colStride
    }

    /// Address of element `[row, col]` (packed views use `row = 0`).
    @inline(__always)
    func address(row: Int, col: Int) -> UnsafeRawPointer {
        // Validated views have in-range offsets; the unchecked arithmetic cannot overflow.
        base.unsafelyUnwrapped + (row &* rowStride &+ col &* colStride) &* dtype.size
    }

    /// Whether element `i` of a 1-D view is nonzero (keep flags, any dtype).
    @inline(__always)
    func isNonzero(_ i: Int) -> Bool { loadFloat(address(row: 0, col: i), dtype) != 0 }

    /// Element `i` of a 1-D index view (offsets, lengths) as Int.
    @inline(__always)
    func index(_ i: Int) -> Int {
        let p = address(row: 0, col: i)
        return dtype == .i64 ? Int(p.loadUnaligned(as: Int64.self)) : Int(p.loadUnaligned(as: Int32.self))
    }
}

/// One element of any dtype as Float (exact for f32, f16, bf16, bytes; rounded for f64, and for
/// integers beyond 2^24).
@inline(__always)
func loadFloat(_ address: UnsafeRawPointer, _ dtype: DType) -> Float {
    switch dtype {
    case .f32: return address.loadUnaligned(as: Float.self)
    case .f64: return Float(address.loadUnaligned(as: Double.self))
    case .f16: return halfToFloat(address.loadUnaligned(as: UInt16.self))
    case .bf16: return Float(bitPattern: UInt32(address.loadUnaligned(as: UInt16.self)) << 16)
    case .u8, .bool: return address.load(as: UInt8.self) == 0 ? 0 : 1
    case .i32: return Float(address.loadUnaligned(as: Int32.self))
    case .i64: return Float(address.loadUnaligned(as: Int64.self))
    // A nonzero integer never rounds to 0 as a Float: masks keep their validity.
    case .i8: return Float(address.load(as: Int8.self))
    case .i16: return Float(address.loadUnaligned(as: Int16.self))
    case .u16: return Float(address.loadUnaligned(as: UInt16.self))
    case .u32: return Float(address.loadUnaligned(as: UInt32.self))
    case .u64: return Float(address.loadUnaligned(as: UInt64.self))
    }
}

/// One element of any dtype as Double (exact for every float dtype).
@inline(__always)
func loadDouble(_ address: UnsafeRawPointer, _ dtype: DType) -> Double {
    dtype == .f64 ? address.loadUnaligned(as: Double.self) : Double(loadFloat(address, dtype))
}

/// IEEE binary16 bits to Float, exactly, without relying on the platform's Float16 support.
@inline(__always)
func halfToFloat(_ h: UInt16) -> Float {
    let sign = UInt32(h & 0x8000) << 16
    let exponent = UInt32(h >> 10) & 0x1f
    let mantissa = UInt32(h & 0x3ff)
    if exponent == 0x1f {  // inf or NaN
        return Float(bitPattern: sign | 0x7f80_0000 | (mantissa << 13))
    }
    if exponent == 0 {  // zero or subnormal: mantissa * 2^-24, exact in Float
        let magnitude = Float(mantissa) * 0x1p-24
        return sign == 0 ? magnitude : -magnitude
    }
    return Float(bitPattern: sign | ((exponent + 112) << 23) | (mantissa << 13))
}

/// A strided output array of a fixed element type. Validated before any kernel writes to it.
public struct OutView<Element>: @unchecked Sendable {
    public var base: UnsafeMutablePointer<Element>?
    public var rowStride: Int
    public var colStride: Int

    public init(base: UnsafeMutablePointer<Element>?, rowStride: Int = 1, colStride: Int = 0) {
        self.base = base
        self.rowStride = rowStride
        self.colStride = colStride
    }

    public static var absent: OutView { OutView(base: nil) }

    @inline(__always)
    func store(_ value: Element, row: Int, col: Int = 0) {
        base.unsafelyUnwrapped[row &* rowStride &+ col &* colStride] = value
    }
}

/// The byte range `[lo, hi)` a strided array touches, relative to its base, or nil when it
/// overflows.
func byteExtent(_ dims: Dims, elementSize: Int) -> (lo: Int, hi: Int)? {
    if dims.outer.count == 0 || dims.inner.count == 0 || dims.deep.count == 0 { return (0, 0) }
    var lo = 0
    var hi = 0
    // Adds one dimension's reach to the range; false on overflow.
    func reach(_ dim: Dimension) -> Bool {
        let (span, o1) = (dim.count - 1).multipliedReportingOverflow(by: dim.stride)
        let (bytes, o2) = span.multipliedReportingOverflow(by: elementSize)
        if o1 || o2 { return false }
        let (sum, o3) = bytes < 0 ? lo.addingReportingOverflow(bytes) : hi.addingReportingOverflow(bytes)
        if o3 { return false }
        if bytes < 0 { lo = sum } else { hi = sum }
        return true
    }
    guard reach(dims.outer), reach(dims.inner), reach(dims.deep) else { return nil }
    let (end, o) = hi.addingReportingOverflow(elementSize)
    return o ? nil : (lo, end)
}

/// The absolute address range of an array whose extent is `extent` bytes around `base`, or nil
/// when it wraps around the address space.
func addressRange(base: UnsafeRawPointer?, extent: (lo: Int, hi: Int)) -> ClosedRange<UInt>? {
    guard let base, extent.hi > extent.lo else { return nil }
    let address = UInt(bitPattern: base)
    let (lo, below) = extent.lo < 0 ? address.subtractingReportingOverflow(extent.lo.magnitude) : (address, false)
    let (hi, above) = address.addingReportingOverflow(UInt(extent.hi - 1))
    return below || above ? nil : lo...hi
}

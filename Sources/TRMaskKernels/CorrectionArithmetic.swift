/// Arithmetic in a narrower dtype, as torch computes it on CPU: each operation in float64 (or
/// float32) and its result rounded to the dtype. Rounding a float64 result of one `+ - * /` to
/// float32, bfloat16 or float16 gives the correctly rounded result of that operation in the narrow
/// dtype (float64 has more than twice their precision plus two bits), so these agree with torch
/// bit for bit on single operations; `exp` is correctly rounded where torch's is within 1 ulp.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A dtype's rounding, as a type so the per-token loop is specialised for it.
protocol ComputeRounding {
    /// The chunk pass's element type for this dtype (`CorrectionChunks`).
    associatedtype Chunk: ChunkElement
    static func round(_ x: Double) -> Double
    /// `round` on eight lanes.
    static func round(_ x: SIMD8<Double>) -> SIMD8<Double>
    /// Stores `x`, a value of this dtype, as this dtype.
    static func store(_ x: Double, at address: UnsafeMutableRawPointer)
}

extension ComputeRounding {
    @inline(__always) static func round(_ x: SIMD8<Double>) -> SIMD8<Double> {
        var y = x
        for lane in 0..<8 { y[lane] = round(x[lane]) }
        return y
    }
}

enum RoundF64: ComputeRounding {
    typealias Chunk = Float  // never used: float64 calls take the element pass (`ChunkMask`)
    @inline(__always) static func store(_ x: Double, at address: UnsafeMutableRawPointer) { address.storeBytes(of: x, as: Double.self) }
    @inline(__always) static func round(_ x: Double) -> Double { x }
    @inline(__always) static func round(_ x: SIMD8<Double>) -> SIMD8<Double> { x }
}

enum RoundF32: ComputeRounding {
    typealias Chunk = Float
    @inline(__always) static func store(_ x: Double, at address: UnsafeMutableRawPointer) { address.storeBytes(of: Float(x), as: Float.self) }
    @inline(__always) static func round(_ x: Double) -> Double { Double(Float(x)) }
    @inline(__always) static func round(_ x: SIMD8<Double>) -> SIMD8<Double> { SIMD8<Double>(SIMD8<Float>(x)) }
}

enum RoundBF16: ComputeRounding {
    typealias Chunk = BFloat16
    @inline(__always) static func store(_ x: Double, at address: UnsafeMutableRawPointer) { storeFloat(x, at: address, .bf16) }
    @inline(__always) static func round(_ x: Double) -> Double { Double(bfloat16Rounded(Float(x))) }
}

enum RoundF16: ComputeRounding {
    typealias Chunk = Half
    @inline(__always) static func store(_ x: Double, at address: UnsafeMutableRawPointer) { storeFloat(x, at: address, .f16) }
    @inline(__always) static func round(_ x: Double) -> Double { halfRounded(Double(Float(x))) }
}

/// A dtype the chunk pass (`CorrectionChunks`) computes in, eight float32 lanes at a time: each
/// operation in float32, its result rounded to the dtype. That is `ComputeRounding.round` of the
/// element pass's float64 result: on values of the dtype, float32 `+ - *` and float64 followed by a
/// rounding to float32 both give the exact result rounded once (float64 has the two bits beyond
/// twice float32's precision that make rounding twice innocuous), so the passes agree bit for bit.
protocol ChunkElement: TokenElement {
    /// Each lane (a float32 value) rounded to the dtype, as `ComputeRounding.round`.
    static func rounded(_ x: Lanes) -> Lanes
    /// Stores eight values of the dtype, contiguous, as the dtype (`storeFloat`'s bits).
    static func store(_ x: Lanes, at address: UnsafeMutableRawPointer)
}

extension Float: ChunkElement {
    @inline(__always) static func rounded(_ x: Lanes) -> Lanes { x }
    @inline(__always) static func store(_ x: Lanes, at address: UnsafeMutableRawPointer) { address.storeBytes(of: x, as: Lanes.self) }
}

extension BFloat16: ChunkElement {
    /// `bfloat16Rounded` on every lane, in integer lanes (adds, shifts and masks compile to
    /// vector instructions; the NaN test is a float comparison).
    @inline(__always) static func rounded(_ x: Lanes) -> Lanes {
        let bits = x.bitPattern
        let up = Lanes(bitPattern: (bits &+ 0x7fff &+ ((bits &>> 16) & 1)) & 0xffff_0000)
        return up.replacing(with: x, where: x .!= x)
    }

    @inline(__always) static func store(_ x: Lanes, at address: UnsafeMutableRawPointer) {
        let bits = x.bitPattern
        var halves = SIMD8<UInt16>()
        for lane in 0..<chunkWidth { halves[lane] = UInt16(truncatingIfNeeded: bits[lane] &>> 16) }
        address.storeBytes(of: halves, as: SIMD8<UInt16>.self)
    }
}

extension Half: ChunkElement {
    /// `halfRounded` per lane (float16 is the rarer dtype: a lane loop, not a vector trick).
    @inline(__always) static func rounded(_ x: Lanes) -> Lanes {
        var y = x
        for lane in 0..<chunkWidth { y[lane] = Float(halfRounded(Double(x[lane]))) }
        return y
    }

    @inline(__always) static func store(_ x: Lanes, at address: UnsafeMutableRawPointer) {
        var halves = SIMD8<UInt16>()
        for lane in 0..<chunkWidth { halves[lane] = halfBits(Double(x[lane])) }
        address.storeBytes(of: halves, as: SIMD8<UInt16>.self)
    }
}

/// `x` (a float32 value) rounded to the nearest bfloat16, ties to even; NaN stays NaN.
@inline(__always)
func bfloat16Rounded(_ x: Float) -> Float {
    if x.isNaN { return x }
    let bits = x.bitPattern
    let rounded = (bits &+ 0x7fff &+ ((bits >> 16) & 1)) & 0xffff_0000
    return Float(bitPattern: rounded)
}

/// `x` (a float32 value, as Double) rounded to the nearest float16, ties to even: 11 significant
/// bits, subnormals below 2^-14 in steps of 2^-24, overflow to infinity from 65520 on.
@inline(__always)
func halfRounded(_ x: Double) -> Double {
    guard x.isFinite else { return x }
    if x.magnitude >= 65520 { return x < 0 ? -.infinity : .infinity }
    let exponent = x == 0 ? -14 : Swift.max(Int(x.exponent), -14)
    let quantum = Double(sign: .plus, exponent: exponent - 10, significand: 1)
    return (x / quantum).rounded(.toNearestOrEven) * quantum
}

/// `x` rounded to a float dtype at run time (for statistics and outputs outside the hot loop).
@inline(__always)
func rounded(_ x: Double, to dtype: DType) -> Double {
    switch dtype {
    case .f32: RoundF32.round(x)
    case .bf16: RoundBF16.round(x)
    case .f16: RoundF16.round(x)
    default: x
    }
}

/// The dtype torch computes `a op b` in for two float dtypes: the wider, and float32 for
/// bfloat16 with float16.
func promoted(_ a: DType, _ b: DType) -> DType {
    if a == b { return a }
    if a == .f64 || b == .f64 { return .f64 }
    return .f32
}

/// Stores `x`, already a value of the float dtype `dtype`, at `address`.
@inline(__always)
func storeFloat(_ x: Double, at address: UnsafeMutableRawPointer, _ dtype: DType) {
    switch dtype {
    case .f64: address.storeBytes(of: x, as: Double.self)
    case .f32: address.storeBytes(of: Float(x), as: Float.self)
    case .bf16: address.storeBytes(of: UInt16(truncatingIfNeeded: Float(x).bitPattern >> 16), as: UInt16.self)
    case .f16: address.storeBytes(of: halfBits(x), as: UInt16.self)
    default: break  // validation admits float dtypes only
    }
}

/// The binary16 bits of `x`, a float16 value (`halfRounded` output).
@inline(__always)
func halfBits(_ x: Double) -> UInt16 {
    let sign: UInt16 = x.sign == .minus ? 0x8000 : 0
    if x.isNaN { return 0x7e00 | sign }
    let magnitude = x.magnitude
    if magnitude.isInfinite { return 0x7c00 | sign }
    if magnitude < 0x1p-14 { return sign | UInt16(magnitude * 0x1p24) }  // subnormal or zero: exact
    let exponent = Int(magnitude.exponent)
    let mantissa = UInt16((magnitude.significand - 1) * 1024)
    return sign | UInt16(exponent + 15) << 10 | mantissa
}

/// Writes element `index` of a token-grid output: `keep ? m : m * 0` in the output's own dtype,
/// from the mask element at `source` (same dtype), so a float mask's value survives where kept and
/// becomes `m * 0` (IEEE: -0.0 for negative m, NaN for NaN or infinite m) where rejected; integer
/// and boolean masks become 0.
@inline(__always)
func storeMaskValue(keep: Bool, source: UnsafeRawPointer?, at address: UnsafeMutableRawPointer, _ dtype: DType) {
    guard let source else {  // no mask: m = 1
        storeOne(keep, at: address, dtype)
        return
    }
    if keep {
        address.copyMemory(from: source, byteCount: dtype.size)
    } else if dtype.isFloat {
        storeFloat(loadDouble(source, dtype) * 0, at: address, dtype)
    } else {
        address.initializeMemory(as: UInt8.self, repeating: 0, count: dtype.size)
    }
}

/// 1 or 0 in any dtype.
@inline(__always)
func storeOne(_ one: Bool, at address: UnsafeMutableRawPointer, _ dtype: DType) {
    switch dtype {
    case .u8, .bool: address.storeBytes(of: one ? 1 : 0, as: UInt8.self)
    case .i8: address.storeBytes(of: one ? 1 : 0, as: Int8.self)
    case .i16: address.storeBytes(of: one ? 1 : 0, as: Int16.self)
    case .u16: address.storeBytes(of: one ? 1 : 0, as: UInt16.self)
    case .i32: address.storeBytes(of: one ? 1 : 0, as: Int32.self)
    case .u32: address.storeBytes(of: one ? 1 : 0, as: UInt32.self)
    case .i64: address.storeBytes(of: one ? 1 : 0, as: Int64.self)
    case .u64: address.storeBytes(of: one ? 1 : 0, as: UInt64.self)
    case .f32, .f64, .f16, .bf16: storeFloat(one ? 1 : 0, at: address, dtype)
    }
}

/// `exp` of eight float64 lanes, within 2 ulps of float64: rounded once to float32, bfloat16 or
/// float16 it is the correctly rounded narrow result except within about 2^-51 (relative) of a
/// rounding boundary. Cody-Waite reduction `x = k ln2 + r`, `|r| <= ln2/2`, and the degree-13
/// Taylor polynomial of `exp(r)` (truncation below 1e-17) in fused multiply-adds (the same on every
/// x86-64-v3/v4 build); `2^k` applied in two halves so results down to the subnormals round once.
/// NaN gives NaN; inputs are clamped to [-746, 710] first (0 and +inf beyond).
@inline(always)  // large: `__always` is not honoured for it (TOOLCHAIN-NOTES)
func simdExp(_ x: SIMD8<Double>) -> SIMD8<Double> {
    let low = SIMD8<Double>(repeating: -746), high = SIMD8<Double>(repeating: 710)
    let y = x.replacing(with: low, where: x .< low).replacing(with: high, where: x .> high)
    let shifter = SIMD8<Double>(repeating: 0x1.8p52)  // adding it rounds to an integer in the low bits
    let shifted = y * 1.4426950408889634 + shifter
    let k = shifted - shifter
    // ln 2 split so that k * ln2High is exact for |k| < 2^11.
    // `r` a constant: a `var` captured by `horner` kept a dynamic exclusivity check
    // (swift_beginAccess) in the correction's chunk loop.
    let r = y.addingProduct(k, SIMD8(repeating: -6.93147180369123816490e-01))
        .addingProduct(k, SIMD8(repeating: -1.90821492927058770002e-10))
    @inline(__always) func horner(_ p: SIMD8<Double>, _ c: Double) -> SIMD8<Double> { SIMD8(repeating: c).addingProduct(p, r) }
    var p = SIMD8<Double>(repeating: 1.0 / 6227020800)  // 1/13!
    p = horner(horner(horner(horner(p, 1.0 / 479001600), 1.0 / 39916800), 1.0 / 3628800), 1.0 / 362880)
    p = horner(horner(horner(horner(p, 1.0 / 40320), 1.0 / 5040), 1.0 / 720), 1.0 / 120)
    p = horner(horner(horner(horner(horner(p, 1.0 / 24), 1.0 / 6), 0.5), 1), 1)
    let integer = unsafeBitCast(shifted, to: SIMD8<Int64>.self) &- unsafeBitCast(shifter, to: SIMD8<Int64>.self)
    let half = integer &>> 1
    let first = unsafeBitCast((half &+ 1023) &<< 52, to: SIMD8<Double>.self)
    let second = unsafeBitCast((integer &- half &+ 1023) &<< 52, to: SIMD8<Double>.self)
    return (p * first * second).replacing(with: x, where: x .!= x)
}

/// NaN-propagating maximum and minimum (torch's `max`/`min` reductions propagate NaN).
@inline(__always)
func propagatingMax(_ a: Double, _ b: Double) -> Double { a.isNaN || b.isNaN ? .nan : (b > a ? b : a) }

@inline(__always)
func propagatingMin(_ a: Double, _ b: Double) -> Double { a.isNaN || b.isNaN ? .nan : (b < a ? b : a) }

/// `min(max(x, lo), hi)` keeping NaN (torch.clamp).
@inline(__always)
func clamped(_ x: Double, _ lo: Double, _ hi: Double) -> Double {
    x.isNaN ? x : (x < lo ? lo : (x > hi ? hi : x))
}

/// The elements of a buffer of `dtype` as Double (exact for every float dtype, and for integers
/// up to 2^53): how the Swift API hands back outputs written in a caller-chosen dtype.
public func widened(_ bytes: UnsafeRawBufferPointer, dtype: DType) -> [Double] {
    guard let base = bytes.baseAddress else { return [] }
    return (0..<(bytes.count / dtype.size)).map { index in
        let address = base + index * dtype.size
        switch dtype {
        case .i64: return Double(address.loadUnaligned(as: Int64.self))
        case .i32: return Double(address.loadUnaligned(as: Int32.self))
        case .u8, .bool: return Double(address.load(as: UInt8.self))
        default: return loadDouble(address, dtype)
        }
    }
}

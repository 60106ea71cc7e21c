/// The SIMD vocabulary of the kernels: a chunk is eight consecutive positions in eight float32
/// lanes, one AVX2 register.
///
/// Why eight, and why these spellings (each checked in the disassembly of the hot loops):
/// - With sixteen lanes, LLVM moves the shuffles that fold the two halves up into the arithmetic
///   and ends up computing in 128-bit pieces and scalars; eight lanes map one-to-one to registers.
///   The scan unrolls over the chunks of a group, which gives the same instruction-level
///   parallelism.
/// - Masks are plain lane bit patterns (all ones = set), combined with bitwise operators. The
///   stdlib's `SIMDMask` operations (`.&`, `.!`, `any`, `replacing(with:where:)` on combined
///   masks) compile to per-lane scalar loops through the stack on AVX2.

typealias Lanes = SIMD8<Float>
typealias LaneMask = SIMD8<UInt32>
typealias WideLanes = SIMD8<Double>

/// Positions per chunk.
let chunkWidth = 8

/// A float comparison's result as a bit mask.
@inline(__always)
func laneMask(_ comparison: SIMDMask<SIMD8<Int32>>) -> LaneMask { unsafeBitCast(comparison, to: LaneMask.self) }

/// Whether any lane of `m` is set (an OR tree and one test, not a lane loop).
@inline(__always)
func anySet(_ m: LaneMask) -> Bool {
    let four = m.lowHalf | m.highHalf
    let two = four.lowHalf | four.highHalf
    return (two[0] | two[1]) != 0
}

/// `a` where `m` is set, else `b`.
@inline(__always)
func select(_ m: LaneMask, _ a: Lanes, _ b: Lanes) -> Lanes {
    Lanes(bitPattern: (a.bitPattern & m) | (b.bitPattern & ~m))
}

/// `x` where `m` is set, else +0.
@inline(__always)
func masked(_ x: Lanes, _ m: LaneMask) -> Lanes { Lanes(bitPattern: x.bitPattern & m) }

/// 1 where `m` is set, else 0.
@inline(__always)
func ones(_ m: LaneMask) -> Lanes { masked(Lanes(repeating: 1), m) }

/// |x| by clearing the sign bit (so |-0| = +0 and NaN stays NaN).
@inline(__always)
func absolute(_ x: Lanes) -> Lanes { Lanes(bitPattern: x.bitPattern & LaneMask(repeating: 0x7fff_ffff)) }

/// The lanes a partial chunk of `count` positions fills.
@inline(__always)
func firstLanes(_ count: Int) -> LaneMask {
    laneMask(Lanes(0, 1, 2, 3, 4, 5, 6, 7) .< Lanes(repeating: Float(count)))
}

/// The lanes of `m` as eight bytes, 1 where set and 0 elsewhere, lane 0 in the lowest byte (the
/// byte order of a little-endian store). The lane loop of truncations compiles to two packs
/// (`vpackssdw`, `vpacksswb`); shuffling halves (`evenHalf`, `oddHalf`) became a scalar lane
/// extraction on AVX2.
@inline(__always)
func keepBytes(_ m: LaneMask) -> UInt64 {
    let bits = m & LaneMask(repeating: 1)
    var bytes = SIMD8<UInt8>()
    for lane in 0..<chunkWidth { bytes[lane] = UInt8(truncatingIfNeeded: bits[lane]) }
    return unsafeBitCast(bytes, to: UInt64.self)
}

extension SIMD8 where Scalar == Float {
    @inline(__always)
    var bitPattern: SIMD8<UInt32> { unsafeBitCast(self, to: SIMD8<UInt32>.self) }

    @inline(__always)
    init(bitPattern: SIMD8<UInt32>) { self = unsafeBitCast(bitPattern, to: SIMD8<Float>.self) }
}

/// A SIMD exponential for the streaming kernels (SPEC §6): `e^x` for eight lanes without a
/// libm call, so exp-heavy loops stay in vector registers.

/// `e^x` for eight lanes, within 2 ulp of the correctly rounded float32 result (Cephes `expf`
/// range reduction and polynomial, evaluated with FMA; measured against float64 in the tests).
///
/// Contract: every lane must be `-inf` or finite and `<= 88`. Lanes below `-86.5` (including
/// `-inf`) give exactly 0 instead of a subnormal (a relative loss below 3e-38 of any sum that also
/// holds a term >= 1). NaN and lanes above 88 give unspecified finite values: callers test for
/// them first. The result for a lane depends on that lane alone and is the same on every ISA
/// (`addingProduct` is always fused).
@inline(__always)
func fastExp(_ x: Lanes) -> Lanes {
    let lowest = Lanes(repeating: -86.5)
    let underflow = x .< lowest
    let clampedX = x.replacing(with: lowest, where: underflow)
    // k = round(x / ln 2) by the 1.5 * 2^23 trick; its low bits are k as an integer.
    let magic = Lanes(repeating: 12_582_912)
    let shifted = magic.addingProduct(clampedX, Lanes(repeating: 1.442_695_04))
    let k = shifted - magic
    // r = x - k ln 2 in two steps (ln 2 = 0.693359375 - 2.12194440e-4), |r| <= ln(2)/2.
    var r = clampedX.addingProduct(k, Lanes(repeating: -0.693_359_375))
    r = r.addingProduct(k, Lanes(repeating: 2.121_944_40e-4))
    var p = Lanes(repeating: 1.987_569_150_0e-4)
    p = Lanes(repeating: 1.398_199_950_7e-3).addingProduct(p, r)
    p = Lanes(repeating: 8.333_451_907_3e-3).addingProduct(p, r)
    p = Lanes(repeating: 4.166_579_589_4e-2).addingProduct(p, r)
    p = Lanes(repeating: 1.666_666_545_9e-1).addingProduct(p, r)
    p = Lanes(repeating: 5.000_000_120_1e-1).addingProduct(p, r)
    let y = (r.addingProduct(p, r * r)) + 1  // e^r in [0.7, 1.42]
    // y * 2^k by adding k to the exponent field (k in -125 ... 127 here, so no overflow).
    let kBits = unsafeBitCast(shifted, to: SIMD8<Int32>.self) &- unsafeBitCast(magic, to: SIMD8<Int32>.self)
    let scaled = unsafeBitCast(unsafeBitCast(y, to: SIMD8<Int32>.self) &+ (kBits &<< 23), to: Lanes.self)
    return scaled.replacing(with: 0, where: underflow)
}

/// `(e^z - 1 - z) / z^2` for |z| <= 0.35: the Taylor series to the z^6 term (the first term left
/// out is below 1e-7 relative there). `z^2 * k3Ratio(z)` is `k3(z)` without cancellation.
@inline(__always)
func k3Ratio(_ z: Lanes) -> Lanes {
    var s = Lanes(repeating: 1.0 / 40320)
    s = Lanes(repeating: 1.0 / 5040).addingProduct(s, z)
    s = Lanes(repeating: 1.0 / 720).addingProduct(s, z)
    s = Lanes(repeating: 1.0 / 120).addingProduct(s, z)
    s = Lanes(repeating: 1.0 / 24).addingProduct(s, z)
    s = Lanes(repeating: 1.0 / 6).addingProduct(s, z)
    return Lanes(repeating: 0.5).addingProduct(s, z)
}

/// `e^x` for eight float64 lanes, within 2 ulp of the correctly rounded result (Taylor series
/// to r^12 on |r| <= ln(2)/2, whose first term left out is below 2e-16 relative; fdlibm's split
/// of ln 2).
///
/// Contract: every lane must be `-inf` or finite and `<= 709`. Lanes below `-708` (including
/// `-inf`) give exactly 0 instead of a subnormal. NaN gives unspecified values: callers test first.
@inline(__always)
func fastExp(_ x: WideLanes) -> WideLanes {
    let lowest = WideLanes(repeating: -708)
    let underflow = x .< lowest
    let clampedX = x.replacing(with: lowest, where: underflow)
    let magic = WideLanes(repeating: 6_755_399_441_055_744)  // 1.5 * 2^52
    let shifted = magic.addingProduct(clampedX, WideLanes(repeating: 1.442_695_040_888_963_4))
    let k = shifted - magic
    var r = clampedX.addingProduct(k, WideLanes(repeating: -6.931_471_803_691_238_164_90e-01))
    r = r.addingProduct(k, WideLanes(repeating: -1.908_214_929_270_587_700_02e-10))
    var p = WideLanes(repeating: 1.0 / 479_001_600)
    p = WideLanes(repeating: 1.0 / 39_916_800).addingProduct(p, r)
    p = WideLanes(repeating: 1.0 / 3_628_800).addingProduct(p, r)
    p = WideLanes(repeating: 1.0 / 362_880).addingProduct(p, r)
    p = WideLanes(repeating: 1.0 / 40320).addingProduct(p, r)
    p = WideLanes(repeating: 1.0 / 5040).addingProduct(p, r)
    p = WideLanes(repeating: 1.0 / 720).addingProduct(p, r)
    p = WideLanes(repeating: 1.0 / 120).addingProduct(p, r)
    p = WideLanes(repeating: 1.0 / 24).addingProduct(p, r)
    p = WideLanes(repeating: 1.0 / 6).addingProduct(p, r)
    p = WideLanes(repeating: 0.5).addingProduct(p, r)
    p = WideLanes(repeating: 1).addingProduct(p, r)
    p = WideLanes(repeating: 1).addingProduct(p, r)
    let kBits = unsafeBitCast(shifted, to: SIMD8<Int64>.self) &- unsafeBitCast(magic, to: SIMD8<Int64>.self)
    let scaled = unsafeBitCast(unsafeBitCast(p, to: SIMD8<Int64>.self) &+ (kBits &<< 52), to: WideLanes.self)
    return scaled.replacing(with: 0, where: underflow)
}

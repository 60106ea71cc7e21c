// Input dtypes through the Swift API (SPEC §10, docs/dtypes.md): bfloat16, float16 and float64
// log-probs, log-ratios and values, mixed pairs, and masks of every TokenScalar type. Narrow types
// must give the bits of float32 holding the same values; float64 the bits of float32 holding the
// delta rounded once.

import TRMask
import XCTest

final class DTypeAPITests: XCTestCase {
    let rows = 5
    let cols = 37
    let criteria = [Criterion(.max, .k2, hi: 0.1), Criterion(.mean, .k3, hi: 0.002), Criterion(.min, .delta, lo: -2),
                    Criterion(.sum, .abs, hi: 1), Criterion(.token, .ratio, lo: 0.5, hi: 2)]

    /// Deterministic log-probs: rollout values and small mismatch with a few spikes and NaNs.
    func logProbs() -> (train: [Double], roll: [Double]) {
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        func next() -> Double {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Double(state >> 11) / Double(1 << 53)
        }
        var train: [Double] = []
        var roll: [Double] = []
        for index in 0..<(rows * cols) {
            let r = -3 * next()
            var d = (next() - 0.5) * 0.05
            if index % 29 == 3 { d = 1.5 }
            roll.append(r)
            train.append(index % 41 == 7 ? .nan : r + d)
        }
        return (train, roll)
    }

    func mask() -> [UInt8] { (0..<(rows * cols)).map { $0 % 7 == 0 ? 0 : UInt8(1 + $0 % 3) } }

    func run<Train: LogProbScalar, Roll: LogProbScalar>(_ train: [Train], _ roll: [Roll], mask: (any MaskMatrix)? = nil) throws -> MaskResult {
        let rows = rows, cols = cols, criteria = criteria
        return try train.withUnsafeBufferPointer { train in
            try roll.withUnsafeBufferPointer { roll in
                let batch = try TokenBatch.padded(logpTrain: StridedMatrix(train, rows: rows, cols: cols),
                                                  logpRoll: StridedMatrix(roll, rows: rows, cols: cols), mask: mask)
                return try trustRegionMask(batch, criteria: criteria, keepToken: true)
            }
        }
    }

    func runLogRatio<Element: LogProbScalar>(_ x: [Element]) throws -> MaskResult {
        let rows = rows, cols = cols, criteria = criteria
        return try x.withUnsafeBufferPointer { x in
            try trustRegionMask(TokenBatch.padded(logRatio: StridedMatrix(x, rows: rows, cols: cols)), criteria: criteria, keepToken: true)
        }
    }

    func assertSameBits(_ a: MaskResult, _ b: MaskResult, _ what: String) {
        XCTAssertEqual(a.keepRow, b.keepRow, what)
        XCTAssertEqual(a.keepToken, b.keepToken, what)
        XCTAssertEqual(a.count, b.count, what)
        XCTAssertEqual(a.nonfinite, b.nonfinite, what)
        XCTAssertEqual(a.rejected, b.rejected, what)
        XCTAssertEqual(a.rowStats.map { $0.map(\.bitPattern) }, b.rowStats.map { $0.map(\.bitPattern) }, what)
    }

    func testNarrowTypesGiveTheBitsOfFloat32() throws {
        let (train, roll) = logProbs()
        let bfTrain = train.map { BFloat16(Float($0)) }
        let bfRoll = roll.map { BFloat16(Float($0)) }
        assertSameBits(try run(bfTrain, bfRoll), try run(bfTrain.map(\.float), bfRoll.map(\.float)), "bf16-bf16")
        // A bfloat16 trainer against a float32 rollout (the common mixed pair).
        let fRoll = roll.map { Float($0) }
        assertSameBits(try run(bfTrain, fRoll), try run(bfTrain.map(\.float), fRoll), "bf16-f32")
        #if !(os(macOS) && arch(x86_64))
        if #available(macOS 11.0, iOS 14.0, tvOS 14.0, watchOS 7.0, *) {
            let hTrain = train.map { Float16($0) }
            assertSameBits(try run(hTrain, fRoll), try run(hTrain.map { Float($0) }, fRoll), "f16-f32")
            assertSameBits(try run(hTrain, bfRoll), try run(hTrain.map { Float($0) }, bfRoll.map(\.float)), "f16-bf16")
            assertSameBits(try runLogRatio(hTrain), try runLogRatio(hTrain.map { Float($0) }), "f16 log-ratio")
        }
        #endif
        assertSameBits(try runLogRatio(bfTrain), try runLogRatio(bfTrain.map(\.float)), "bf16 log-ratio")
    }

    func testFloat64GivesTheBitsOfItsRoundedDelta() throws {
        let (train, roll) = logProbs()
        let delta = zip(train, roll).map { Float($0 - $1) }
        assertSameBits(try run(train, roll), try runLogRatio(delta), "f64-f64")
        assertSameBits(try run(train, roll.map { Float($0) }),
                       try runLogRatio(zip(train, roll).map { Float($0 - Double(Float($1))) }), "f64-f32")
        assertSameBits(try runLogRatio(train), try runLogRatio(train.map { Float($0) }), "f64 log-ratio")
    }

    func testMasksOfEveryTypeMeanNonzero() throws {
        let (train, roll) = logProbs()
        let f32Train = train.map { Float($0) }, f32Roll = roll.map { Float($0) }
        let bytes = mask()
        let rows = rows, cols = cols
        let want = try bytes.withUnsafeBufferPointer { try run(f32Train, f32Roll, mask: StridedMatrix($0, rows: rows, cols: cols)) }
        let bools = bytes.map { $0 != 0 }
        let floats: [Float] = bytes.map { $0 == 0 ? -0.0 : ($0 == 2 ? .nan : Float($0) * 0.5) }
        let longs = bytes.map { $0 == 0 ? Int64(0) : -Int64($0) }
        let ints = bytes.map { Int32($0) }
        let doubles = bytes.map { Double($0) * 0.25 }
        assertSameBits(try bools.withUnsafeBufferPointer { try run(f32Train, f32Roll, mask: StridedMatrix($0, rows: rows, cols: cols)) },
                       want, "Bool mask")
        assertSameBits(try floats.withUnsafeBufferPointer { try run(f32Train, f32Roll, mask: StridedMatrix($0, rows: rows, cols: cols)) },
                       want, "Float mask")
        assertSameBits(try longs.withUnsafeBufferPointer { try run(f32Train, f32Roll, mask: StridedMatrix($0, rows: rows, cols: cols)) },
                       want, "Int64 mask")
        assertSameBits(try ints.withUnsafeBufferPointer { try run(f32Train, f32Roll, mask: StridedMatrix($0, rows: rows, cols: cols)) },
                       want, "Int32 mask")
        assertSameBits(try doubles.withUnsafeBufferPointer { try run(f32Train, f32Roll, mask: StridedMatrix($0, rows: rows, cols: cols)) },
                       want, "Double mask")
        // The integer types of ABI 3, with values whose low byte is 0 (a byte read would see 0).
        let int8s = bytes.map { Int8($0) * -1 }
        let int16s = bytes.map { Int16($0) << 8 }
        let uint16s = bytes.map { UInt16($0) << 8 }
        let uint32s = bytes.map { UInt32($0) << 24 }
        let uint64s = bytes.map { UInt64($0) << 56 }
        func matrix<E: TokenScalar>(_ values: [E]) throws -> MaskResult {
            try values.withUnsafeBufferPointer { try run(f32Train, f32Roll, mask: StridedMatrix($0, rows: rows, cols: cols)) }
        }
        assertSameBits(try matrix(int8s), want, "Int8 mask")
        assertSameBits(try matrix(int16s), want, "Int16 mask")
        assertSameBits(try matrix(uint16s), want, "UInt16 mask")
        assertSameBits(try matrix(uint32s), want, "UInt32 mask")
        assertSameBits(try matrix(uint64s), want, "UInt64 mask")
    }

    /// `TokenBatch.withPadded` takes a Swift array mask of any element type (README's snippet uses
    /// `[Bool]`).
    func testWithPaddedTakesArrayMasksOfEveryType() throws {
        let (train, roll) = logProbs()
        let f32Train = train.map { Float($0) }, f32Roll = roll.map { Float($0) }
        let bytes = mask()
        let rows = rows, cols = cols, criteria = criteria
        func padded(_ mask: (any MaskArray)?) throws -> MaskResult {
            try TokenBatch.withPadded(logpTrain: f32Train, logpRoll: f32Roll, rows: rows, cols: cols, mask: mask) {
                (batch) throws(TRMaskError) in try trustRegionMask(batch, criteria: criteria, keepToken: true)
            }
        }
        let want = try bytes.withUnsafeBufferPointer { try run(f32Train, f32Roll, mask: StridedMatrix($0, rows: rows, cols: cols)) }
        assertSameBits(try padded(bytes), want, "[UInt8]")
        assertSameBits(try padded(bytes.map { $0 != 0 }), want, "[Bool]")
        assertSameBits(try padded(bytes.map { Int32($0) }), want, "[Int32]")
        assertSameBits(try padded(bytes.map { UInt16($0) << 8 }), want, "[UInt16]")
        assertSameBits(try padded(bytes.map { Float($0) }), want, "[Float]")
        XCTAssertNotEqual(try padded(nil).count, want.count)  // the mask was read
        XCTAssertThrowsError(try padded([true])) { error in
            XCTAssertEqual(error as? TRMaskError, TRMaskError(.badSize, argument: "mask"))
        }
    }

    func testPackedDTypesAndMasks() throws {
        let (train, roll) = logProbs()
        let offsets: [Int64] = [0, 40, 40, 120, Int64(rows * cols)]
        let lengths: [Int64] = [40, 0, 70, 50]
        let bytes = mask()
        let bf = train.map { BFloat16(Float($0)) }
        let floatRoll = roll.map { Float($0) }
        func packed<Train: LogProbScalar>(_ train: [Train], mask: (any MaskBuffer)?) throws -> MaskResult {
            try train.withUnsafeBufferPointer { t in
                try floatRoll.withUnsafeBufferPointer { r in
                    try offsets.withUnsafeBufferPointer { o in
                        try lengths.withUnsafeBufferPointer { l in
                            try trustRegionMask(TokenBatch.packed(logpTrain: t, logpRoll: r, offsets: o, mask: mask, lengths: l),
                                                criteria: criteria, keepToken: true)
                        }
                    }
                }
            }
        }
        let want = try bytes.withUnsafeBufferPointer { try packed(bf.map(\.float), mask: $0) }
        let longs = bytes.map { Int64($0) }
        assertSameBits(try longs.withUnsafeBufferPointer { try packed(bf, mask: $0) }, want, "packed bf16, Int64 mask")
        XCTAssertEqual(want.count[1], 0)
    }

    func testBFloat16Rounding() {
        XCTAssertEqual(BFloat16(1.0).bitPattern, 0x3F80)
        XCTAssertEqual(BFloat16(Float(bitPattern: 0x3F80_8000)).bitPattern, 0x3F80)  // tie to even (down)
        XCTAssertEqual(BFloat16(Float(bitPattern: 0x3F81_8000)).bitPattern, 0x3F82)  // tie to even (up)
        XCTAssertEqual(BFloat16(Float(bitPattern: 0x3F80_8001)).bitPattern, 0x3F81)
        XCTAssertTrue(BFloat16(Float.nan).float.isNaN)
        XCTAssertEqual(BFloat16(-Float.infinity).float, -.infinity)
        XCTAssertEqual(BFloat16(Float.greatestFiniteMagnitude).float, .infinity)  // rounds up past the largest bfloat16
    }

    func testShapeErrorsNameTheArgument() throws {
        let x = [Float](repeating: 0, count: 6)
        let bad = [Bool](repeating: true, count: 4)
        XCTAssertThrowsError(try x.withUnsafeBufferPointer { x in
            try bad.withUnsafeBufferPointer { m in
                _ = try TokenBatch.padded(logRatio: StridedMatrix(x, rows: 2, cols: 3), mask: StridedMatrix(m, rows: 2, cols: 2))
            }
        }) { XCTAssertEqual(($0 as? TRMaskError)?.argument, "mask") }
        let offsets: [Int64] = [0, 6]
        XCTAssertThrowsError(try x.withUnsafeBufferPointer { x in
            try offsets.withUnsafeBufferPointer { o in
                try bad.withUnsafeBufferPointer { m in _ = try TokenBatch.packed(logRatio: x, offsets: o, mask: m) }
            }
        }) { XCTAssertEqual(($0 as? TRMaskError)?.argument, "mask") }
    }
}

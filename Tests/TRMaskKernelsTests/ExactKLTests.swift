// Tests of the exact-KL kernels (SPEC §6): the SIMD exponential and series in ULPs against float64,
// the KL/TV/log-prob kernel against a float64 reference written here, the top-k bound, every
// validation status, and determinism across thread counts.
//
// Tolerances: fastExp 2 ulp (Cephes expf with FMA; the float64 one: Taylor to r^12); k3Ratio 3e-7 relative (series to z^6 plus
// float32 Horner rounding); KL 1e-4 relative + 1e-8 (SPEC §6); TV 1e-5 relative + 1e-8;
// log-probabilities 1e-6 relative + 2e-7.

import Foundation
import XCTest

@testable import TRMaskKernels

final class ExactKLTests: XCTestCase {
    // MARK: float64 reference

    struct Reference { var kl: Double; var tv: Double; var logp: [Double]; var logq: [Double] }

    static func logSoftmax(_ z: [Double]) -> [Double] {
        let m = z.max() ?? -.infinity
        let lse = m + log(z.reduce(0) { $0 + exp($1 - m) })
        return z.map { $0 - lse }
    }

    static func reference(_ a: [Float], _ b: [Float], temperature: Double) -> Reference {
        let logp = logSoftmax(a.map { Double($0) / temperature })
        let logq = logSoftmax(b.map { Double($0) / temperature })
        var kl = 0.0
        var tv = 0.0
        for v in a.indices {
            let p = exp(logp[v])
            let q = exp(logq[v])
            if p > 0 {
                let u = logq[v] - logp[v]
                kl += p * (expm1(u) - u)
                tv += p * Swift.abs(expm1(u))
            } else {
                kl += q
                tv += q
            }
        }
        return Reference(kl: kl, tv: 0.5 * tv, logp: logp, logq: logq)
    }

    /// Runs the kernel on `[n, v]` row-major float32 logits.
    static func run(_ a: [Float], _ b: [Float], n: Int, v: Int, temperature: Double = 1, ids: [Int64]? = nil,
                    threads: Int = 1) -> (status: Status, kl: [Float], tv: [Float], lp: [Float], lq: [Float]) {
        let count = Swift.max(n, 0)
        var kl = [Float](repeating: -1, count: count)
        var tv = [Float](repeating: -1, count: count)
        var lp = [Float](repeating: -1, count: count)
        var lq = [Float](repeating: -1, count: count)
        let status = a.withUnsafeBufferPointer { a in
            b.withUnsafeBufferPointer { b in
                (ids ?? []).withUnsafeBufferPointer { idBuffer in
                    kl.withUnsafeMutableBufferPointer { klOut in
                        tv.withUnsafeMutableBufferPointer { tvOut in
                            lp.withUnsafeMutableBufferPointer { lpOut in
                                lq.withUnsafeMutableBufferPointer { lqOut in
                                    let input = LogitPair(
                                        rows: n, cols: 1, vocab: v,
                                        rollout: GridView3(base: UnsafeRawPointer(a.baseAddress), dtype: .f32, rowStride: v, colStride: 0, depthStride: 1),
                                        train: GridView3(base: UnsafeRawPointer(b.baseAddress), dtype: .f32, rowStride: v, colStride: 0, depthStride: 1),
                                        tokenIDs: ids == nil ? nil : StridedView(base: UnsafeRawPointer(idBuffer.baseAddress), dtype: .i64, rowStride: 1, colStride: 0))
                                    let outputs = ExactKLOutputs(
                                        kl: OutView(base: klOut.baseAddress), tv: OutView(base: tvOut.baseAddress),
                                        logpRollToken: ids == nil ? .absent : OutView(base: lpOut.baseAddress),
                                        logpTrainToken: ids == nil ? .absent : OutView(base: lqOut.baseAddress))
                                    return exactKL(input, options: LogitOptions(temperature: temperature, threads: threads), outputs: outputs)
                                }
                            }
                        }
                    }
                }
            }
        }
        return (status, kl, tv, lp, lq)
    }

    static func close(_ got: Float, _ want: Double, rtol: Double, atol: Double) -> Bool {
        if want.isNaN { return got.isNaN }
        if want.isInfinite { return Double(got) == want }
        return Swift.abs(Double(got) - want) <= rtol * Swift.abs(want) + atol
    }

    // MARK: SIMD building blocks

    func testFastExpWithinTwoUlp() {
        var worst = 0.0
        var x: Float = -86.4
        while x <= 1.5 {
            var lanes = Lanes()
            for lane in 0..<chunkWidth { lanes[lane] = x + Float(lane) * 1e-3 }
            let got = fastExp(lanes)
            for lane in 0..<chunkWidth {
                let want = exp(Double(lanes[lane]))
                let ulp = Double(Float(want).ulp)
                worst = Swift.max(worst, Swift.abs(Double(got[lane]) - want) / ulp)
            }
            x += 0.0173
        }
        XCTAssertLessThanOrEqual(worst, 2.0)
        let special = fastExp(Lanes(-.infinity, -87, -200, 0, 1, 64, 88, -86.5))
        XCTAssertEqual(special[0], 0)
        XCTAssertEqual(special[1], 0)
        XCTAssertEqual(special[2], 0)
        XCTAssertEqual(special[3], 1)
        XCTAssertTrue(special[6].isFinite)
    }

    func testFloat64FastExpWithinTwoUlp() {
        var worst = 0.0
        var x = -707.9
        while x <= 700 {
            var lanes = WideLanes()
            for lane in 0..<chunkWidth { lanes[lane] = x + Double(lane) * 1.37e-3 }
            let got = fastExp(lanes)
            for lane in 0..<chunkWidth {
                let want = exp(lanes[lane])
                worst = Swift.max(worst, Swift.abs(got[lane] - want) / want.ulp)
            }
            x += 0.0917
        }
        XCTAssertLessThanOrEqual(worst, 2.0)
        let special = fastExp(WideLanes(-.infinity, -709, -1000, 0, 1, 709, -708, 0))
        XCTAssertEqual(special[0], 0)
        XCTAssertEqual(special[1], 0)
        XCTAssertEqual(special[2], 0)
        XCTAssertEqual(special[3], 1)
        XCTAssertEqual(special[4], exp(1.0), accuracy: 2 * exp(1.0).ulp)
        XCTAssertTrue(special[5].isFinite)
    }

    func testK3RatioAgainstFloat64() {
        var worst = 0.0
        for i in -3500...3500 where i != 0 {
            let z = Float(i) * 1e-4
            let got = Double(k3Ratio(Lanes(repeating: z))[0])
            let zd = Double(z)
            let want = (expm1(zd) - zd) / (zd * zd)
            worst = Swift.max(worst, Swift.abs(got - want) / want)
        }
        XCTAssertLessThan(worst, 3e-7)
    }

    // MARK: the kernel against float64

    func testAgainstReferenceOverVocabSizesAndShapes() {
        var generator = SystemRandomNumberGenerator()
        for v in [1, 2, 15, 16, 17, 33, 257, 1000, 4099] {
            for (noise, shift, temperature) in [(0.0, 0.0, 1.0), (1e-3, 0.0, 1.0), (0.05, 3.0, 0.7), (1.0, -20.0, 2.0), (5.0, 0.0, 1.0)] {
                let n = 3
                var a = [Float](repeating: 0, count: n * v)
                var b = [Float](repeating: 0, count: n * v)
                for i in 0..<(n * v) {
                    a[i] = Float.random(in: -10...10, using: &generator)
                    b[i] = a[i] + Float(shift) + Float(Double.random(in: -1...1, using: &generator) * noise)
                }
                if v > 4 {
                    for i in 0..<(v / 4) { a[i] = -.infinity }             // row 0: p = 0 on a run
                    for i in (v + 1)..<(v + 1 + v / 4) { b[i] = -.infinity } // row 1: q = 0 where p > 0
                }
                let ids = (0..<n).map { Int64($0 % v) }
                let got = Self.run(a, b, n: n, v: v, temperature: temperature, ids: ids)
                XCTAssertEqual(got.status, .ok)
                for row in 0..<n {
                    let ref = Self.reference(Array(a[(row * v)..<((row + 1) * v)]), Array(b[(row * v)..<((row + 1) * v)]), temperature: temperature)
                    let context = "v \(v) noise \(noise) row \(row)"
                    XCTAssertTrue(Self.close(got.kl[row], ref.kl, rtol: 1e-4, atol: 1e-8), "kl \(got.kl[row]) vs \(ref.kl), \(context)")
                    XCTAssertTrue(Self.close(got.tv[row], ref.tv, rtol: 1e-5, atol: 1e-8), "tv \(got.tv[row]) vs \(ref.tv), \(context)")
                    XCTAssertTrue(Self.close(got.lp[row], ref.logp[Int(ids[row])], rtol: 1e-6, atol: 2e-7), "logp, \(context)")
                    XCTAssertTrue(Self.close(got.lq[row], ref.logq[Int(ids[row])], rtol: 1e-6, atol: 2e-7), "logq, \(context)")
                }
            }
        }
    }

    func testShiftAndIdenticalGiveZero() {
        let v = 5000
        let a = (0..<v).map { Float(sin(Double($0)) * 20) }
        for shift: Float in [0, 0.5, 37] {
            let got = Self.run(a, a.map { $0 + shift }, n: 1, v: v)
            XCTAssertLessThanOrEqual(got.kl[0], 1e-8)
        }
    }

    func testTopKBoundBelowTheKL() {
        let v = 300
        let a = (0..<v).map { Float(cos(Double($0) * 0.37) * 6) }
        let b = a.enumerated().map { $0.element + Float(sin(Double($0.offset))) * 0.2 }
        let ref = Self.reference(a, b, temperature: 1)
        let k = 8
        let top = ref.logp.indices.sorted { ref.logp[$0] > ref.logp[$1] }.prefix(k)
        let logprobs = top.map { ref.logp[$0] }
        let ids = top.map { Int64($0) }
        var out: [Float] = [0]
        let status = logprobs.withUnsafeBufferPointer { lp in
            ids.withUnsafeBufferPointer { ids in
                b.withUnsafeBufferPointer { b in
                    out.withUnsafeMutableBufferPointer { out in
                        topKKLLowerBound(TopKInputs(rows: 1, cols: 1, vocab: v, k: k,
                                                    logprobs: GridView3(base: UnsafeRawPointer(lp.baseAddress), dtype: .f64, rowStride: k, colStride: 0, depthStride: 1),
                                                    ids: GridView3(base: UnsafeRawPointer(ids.baseAddress), dtype: .i64, rowStride: k, colStride: 0, depthStride: 1),
                                                    train: GridView3(base: UnsafeRawPointer(b.baseAddress), dtype: .f32, rowStride: v, colStride: 0, depthStride: 1)),
                                         options: LogitOptions(), out: OutView(base: out.baseAddress))
                    }
                }
            }
        }
        XCTAssertEqual(status, .ok)
        XCTAssertGreaterThan(out[0], 0)
        XCTAssertLessThanOrEqual(Double(out[0]), ref.kl * (1 + 1e-5))
    }

    // MARK: validation and determinism

    func testEveryValidationStatus() {
        let a = [Float](repeating: 0, count: 8)
        XCTAssertEqual(Self.run(a, a, n: 2, v: 4, temperature: 0).status, .badTemperature)
        XCTAssertEqual(Self.run(a, a, n: 2, v: 4, temperature: .nan).status, .badTemperature)
        XCTAssertEqual(Self.run(a, a, n: 2, v: 4, temperature: 1e-50).status, .badTemperature)
        XCTAssertEqual(Self.run(a, a, n: 2, v: 4, ids: [0, 4]).status, .badTokenID)
        XCTAssertEqual(Self.run(a, a, n: 2, v: 4, ids: [-1, 0]).status, .badTokenID)
        XCTAssertEqual(Self.run(a, a, n: 2, v: 4, threads: -1).status, .badOption)
        XCTAssertEqual(Self.run([], [], n: 2, v: 0).status, .badSize)
        XCTAssertEqual(Self.run(a, a, n: -1, v: 4).status, .badSize)
        XCTAssertEqual(Self.run([], [], n: 0, v: 4).status, .ok)
        // NULL data with elements, a non-float dtype, outputs that alias, logp without ids.
        a.withUnsafeBufferPointer { buffer in
            let good = GridView3(base: UnsafeRawPointer(buffer.baseAddress), dtype: .f32, rowStride: 4, colStride: 0, depthStride: 1)
            var out = [Float](repeating: 0, count: 2)
            out.withUnsafeMutableBufferPointer { out in
                let kl = OutView<Float>(base: out.baseAddress)
                func status(_ input: LogitPair, _ outputs: ExactKLOutputs) -> Status { exactKL(input, options: LogitOptions(), outputs: outputs) }
                var null = good
                null.base = nil
                XCTAssertEqual(status(LogitPair(rows: 2, cols: 1, vocab: 4, rollout: null, train: good), ExactKLOutputs(kl: kl)), .nullPointer)
                var bytes = good
                bytes.dtype = .u8
                XCTAssertEqual(status(LogitPair(rows: 2, cols: 1, vocab: 4, rollout: bytes, train: good), ExactKLOutputs(kl: kl)), .badDType)
                XCTAssertEqual(status(LogitPair(rows: 2, cols: 1, vocab: 4, rollout: good, train: good), ExactKLOutputs(kl: kl, tv: kl)), .aliasing)
                XCTAssertEqual(status(LogitPair(rows: 2, cols: 1, vocab: 4, rollout: good, train: good), ExactKLOutputs(kl: OutView(base: out.baseAddress, rowStride: 0))), .badStride)
                XCTAssertEqual(status(LogitPair(rows: 2, cols: 1, vocab: 4, rollout: good, train: good), ExactKLOutputs(logpRollToken: kl)), .badInputs)
                var far = good
                far.rowStride = .max / 2
                XCTAssertEqual(status(LogitPair(rows: 2, cols: 1, vocab: 4, rollout: far, train: good), ExactKLOutputs(kl: kl)), .outOfRange)
            }
        }
    }

    func testBitIdenticalAcrossThreadCounts() {
        let n = 40
        let v = 1003
        var generator = SystemRandomNumberGenerator()
        let a = (0..<(n * v)).map { _ in Float.random(in: -8...8, using: &generator) }
        let b = a.map { $0 + Float.random(in: -0.3...0.3, using: &generator) }
        let ids = (0..<n).map { Int64($0 * 7 % v) }
        let first = Self.run(a, b, n: n, v: v, ids: ids, threads: 1)
        for threads in [2, 3, 8] {
            let other = Self.run(a, b, n: n, v: v, ids: ids, threads: threads)
            XCTAssertEqual(other.kl.map(\.bitPattern), first.kl.map(\.bitPattern))
            XCTAssertEqual(other.tv.map(\.bitPattern), first.tv.map(\.bitPattern))
            XCTAssertEqual(other.lq.map(\.bitPattern), first.lq.map(\.bitPattern))
        }
    }
}

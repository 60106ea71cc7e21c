// The size arithmetic and the working-memory limit of include/trmask.h ("Limits"): checked
// products, the metrics' per-row record size the header states, and TRM_E_TOO_LARGE before any
// allocation or write. The trapping cases themselves run in child processes:
// Tests/cabi/regressions.c (python/tests/test_hardening.py, make test-regressions).

import XCTest

@testable import TRMaskKernels

final class SizeLimitTests: XCTestCase {
    func testSizeProductsRefuseNegativeAndOverflowingSizes() {
        XCTAssertEqual(sizeProduct(3, 5), 15)
        XCTAssertEqual(sizeProduct(0, Int.max), 0)
        XCTAssertNil(sizeProduct(-1, -1))
        XCTAssertNil(sizeProduct(1 << 32, 1 << 32))
        XCTAssertNil(sizeProduct(1 << 20, 1 << 20, 1 << 30))
        XCTAssertEqual(sizeProduct(1 << 20, 1 << 20, 1 << 20), 1 << 60)
    }

    func testMetricRecordsAreTheSizeTheHeaderStates() {
        XCTAssertEqual(MemoryLayout<RowRecord>.stride, 240, "include/trmask.h states 240 bytes per row")
        XCTAssertEqual(maximumScratchBytes, 1 << 32, "include/trmask.h states 4 GiB")
        XCTAssertEqual(metricRecordBytes(rows: 17_895_697, rowCriteria: 0), 17_895_697 * 240)
        XCTAssertNil(metricRecordBytes(rows: 17_895_698, rowCriteria: 0), "about 17.9 million rows")
        XCTAssertNotNil(metricRecordBytes(rows: 8_600_000, rowCriteria: 64))
        XCTAssertNil(metricRecordBytes(rows: 8_700_000, rowCriteria: 64), "about 8.7 million rows")
        XCTAssertNil(metricRecordBytes(rows: 1 << 58, rowCriteria: 64), "rows x criteria overflows")
    }

    func testMetricsOfAHugeEmptyBatchAreRefusedBeforeAnyWrite() {
        var metrics = MaskMetrics()
        metrics.rows = -7
        var keep: [UInt8] = [9]
        let batch = Batch(layout: .padded, rows: 1_000_000_000_000, cols: 0, source: .logRatio(StridedView(base: nil, dtype: .f32)))
        let criteria = [Criterion(.max, .k2, hi: 1)]
        withUnsafeMutablePointer(to: &metrics) { metrics in
            keep.withUnsafeMutableBufferPointer { keep in
                let zeroStride = MaskOutputs(keepRow: OutView(base: keep.baseAddress, rowStride: 0), metrics: metrics)
                XCTAssertEqual(trustRegionMask(batch, criteria: criteria, options: ReductionOptions(), outputs: zeroStride), .badStride,
                               "the O(1) stride check comes first")
                XCTAssertEqual(trustRegionMask(batch, criteria: criteria, options: ReductionOptions(), outputs: MaskOutputs(metrics: metrics)),
                               .tooLarge)
            }
        }
        XCTAssertEqual(metrics.rows, -7)
        XCTAssertEqual(keep, [9])
        XCTAssertEqual(Status.tooLarge.rawValue, 25)
        XCTAssertEqual("\(Status.tooLarge.name)", "TRM_E_TOO_LARGE")
    }
}

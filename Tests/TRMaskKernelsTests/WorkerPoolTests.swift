// The persistent worker pool (Sources/TRMaskKernels/WorkerPool.swift): every row is visited once
// by a worker index below the count asked for, from concurrent callers, and in a forked child
// (which has none of the parent's helper threads).

import Foundation
import Synchronization
import XCTest

@testable import TRMaskKernels

final class WorkerPoolTests: XCTestCase {
    /// How many times each row was visited by `forEachRowBlock`, and whether every worker index
    /// was below `workers`.
    private static func visits(rows: Int, workers: Int) -> (counts: [Int], indicesInRange: Bool) {
        let counts = UnsafeMutablePointer<Atomic<Int>>.allocate(capacity: Swift.max(1, rows))
        defer { counts.deallocate() }
        for row in 0..<rows { (counts + row).initialize(to: Atomic(0)) }
        let outOfRange = Atomic<Int>(0)
        forEachRowBlock(rows: rows, workers: workers) { worker, block in
            if worker < 0 || worker >= workers { outOfRange.wrappingAdd(1, ordering: .relaxed) }
            for row in block { (counts + row).pointee.wrappingAdd(1, ordering: .relaxed) }
        }
        return ((0..<rows).map { (counts + $0).pointee.load(ordering: .relaxed) }, outOfRange.load(ordering: .relaxed) == 0)
    }

    func testEveryRowOnceForEveryWorkerCount() {
        for workers in [1, 2, 3, 8] {
            for rows in [0, 1, 2, 7, 1000] {
                let (counts, inRange) = Self.visits(rows: rows, workers: workers)
                XCTAssertEqual(counts, [Int](repeating: 1, count: rows), "workers \(workers), rows \(rows)")
                XCTAssertTrue(inRange)
            }
        }
    }

    /// Callers on several threads at once: each call's rows are its own, each visited once.
    func testConcurrentCallers() {
        let failures = Atomic<Int>(0)
        DispatchQueue.concurrentPerform(iterations: 6) { caller in
            for round in 0..<200 {
                let rows = 50 + caller * 7 + round % 13
                let (counts, inRange) = Self.visits(rows: rows, workers: 2 + caller % 3)
                if !inRange || counts != [Int](repeating: 1, count: rows) { failures.wrappingAdd(1, ordering: .relaxed) }
            }
        }
        XCTAssertEqual(failures.load(ordering: .relaxed), 0)
    }

    /// Call (the pool's helpers start), fork, call in the child (it must not wait on the parent's
    /// helpers, which do not exist there), then call in the parent again.
    func testForkedChildStartsItsOwnPool() {
        XCTAssertEqual(Self.visits(rows: 500, workers: 2).counts, [Int](repeating: 1, count: 500))
        let child = fork()
        if child == 0 {
            let (counts, inRange) = Self.visits(rows: 500, workers: 2)
            _exit(counts == [Int](repeating: 1, count: 500) && inRange ? 0 : 1)
        }
        XCTAssertGreaterThan(child, 0)
        var status: Int32 = 0
        XCTAssertEqual(waitpid(child, &status, 0), child)
        XCTAssertEqual(status, 0, "the child's call failed or crashed (wait status \(status))")
        XCTAssertEqual(Self.visits(rows: 500, workers: 2).counts, [Int](repeating: 1, count: 500))
    }

    func testWorkerCountIsClampedToTheProcessors() {
        XCTAssertEqual(workerCount(threads: 0, rows: 1000, positions: 1 << 24), availableProcessors)
        XCTAssertEqual(workerCount(threads: 1000, rows: 1000, positions: 1 << 24), availableProcessors)
        XCTAssertEqual(workerCount(threads: 8, rows: 1000, positions: parallelMinimumPositions - 1), 1)
        XCTAssertEqual(workerCount(threads: 8, rows: 1, positions: 1 << 24), 1)
    }
}

import TRMask

// Log-probs of the sampled tokens (row-major [3, 4]) under the training and rollout engines.
let logpTrain: [Float] = [-0.51, -1.20, -0.05, -2.00, -0.50, -0.20, -0.05, -2.00, -0.30, -0.10, 0, 0]
let logpRoll: [Float] = [-0.50, -1.21, -0.05, -2.02, -0.50, -1.40, -0.05, -2.00, -0.31, -0.10, 0, 0]
let mask: [UInt8] = [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0]

do {
    let result = try TokenBatch.withPadded(logpTrain: logpTrain, logpRoll: logpRoll, rows: 3, cols: 4, mask: mask) {
        (batch) throws(TRMaskError) in try trustRegionMask(batch, keepToken: true)  // TRM-Max&Avg defaults
    }
    print("keep rows: \(result.keepRow)")
    print("max k2 per row: \(result.rowStats[0])")
    print("rejected per criterion: \(result.rejected)")
    _ = try TokenBatch.withPadded(logpTrain: logpTrain, logpRoll: logpRoll, rows: 3, cols: 4) {
        (batch) throws(TRMaskError) in try trustRegionMask(batch, criteria: [Criterion(.max, .k2, hi: -1)])
    }
} catch {
    print("refused: \(error)")  // a negative bound on k2 is an invalid threshold
}

import TRMask

// Log-probs of the sampled tokens (row-major [3, 4]) under the training and rollout engines.
let logpTrain: [Float] = [-0.51, -1.20, -0.05, -2.00, -0.50, -0.20, -0.05, -2.00, -0.30, -0.10, 0, 0]
let logpRoll: [Float] = [-0.50, -1.21, -0.05, -2.02, -0.50, -1.40, -0.05, -2.00, -0.31, -0.10, 0, 0]
let mask: [Bool] = [true, true, true, true, true, true, true, true, true, true, false, false]  // or [UInt8], [Int32], ...
let result = try TokenBatch.withPadded(logpTrain: logpTrain, logpRoll: logpRoll, rows: 3, cols: 4, mask: mask) {
    (batch) throws(TRMaskError) in try trustRegionMask(batch, criteria: Criterion.trmDefault)
}
print("keep rows: \(result.keepRow)")  // [true, false, true]

// (The lines above are README.md's Swift snippet.) The token mask, from a uint8 mask this time:
let byteMask: [UInt8] = mask.map { $0 ? 1 : 0 }
do {
    let withTokens = try TokenBatch.withPadded(logpTrain: logpTrain, logpRoll: logpRoll, rows: 3, cols: 4, mask: byteMask) {
        (batch) throws(TRMaskError) in try trustRegionMask(batch, keepToken: true)  // TRM-Max&Avg defaults
    }
    print("keep tokens: \(withTokens.keepToken)")
    print("max k2 per row: \(withTokens.rowStats[0])")
    print("rejected per criterion: \(withTokens.rejected)")
    _ = try TokenBatch.withPadded(logpTrain: logpTrain, logpRoll: logpRoll, rows: 3, cols: 4) {
        (batch) throws(TRMaskError) in try trustRegionMask(batch, criteria: [Criterion(.max, .k2, hi: -1)])
    }
} catch {
    print("refused: \(error)")  // a negative bound on k2 is an invalid threshold
}

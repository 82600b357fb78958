import HeadcountCluster
import Testing

@Suite struct HashingTests {
    let reference = VisitorHasher(key: Array(0..<16))!

    func sip(_ bytes: [UInt8]) -> UInt64 {
        // Hash raw bytes through the String path: ids are ASCII, so bytes below 0x80 map one to one.
        reference.hash(String(decoding: bytes, as: UTF8.self))
    }

    /// Vectors of the SipHash reference implementation (key 00…0f, message 00…(n-1)).
    @Test func referenceVectors() {
        #expect(sip([]) == 0x726f_db47_dd0e_0e31)
        #expect(sip(Array(0..<8)) == 0x93f5_f579_9a93_2462)
        #expect(sip(Array(0..<15)) == 0xa129_ca61_49be_45e5)
        #expect(sip(Array(0..<63)) == 0x958a_324c_eb06_4572)
    }

    @Test func sameIdSameHashOnEveryNode() {
        let a = VisitorHasher(k0: 1, k1: 2)
        let b = VisitorHasher(k0: 1, k1: 2)
        #expect(a.hash("3f9c2a") == b.hash("3f9c2a"))
        #expect(a.hash("3f9c2a") != a.hash("3f9c2b"))
    }

    @Test func keyChangesEveryHash() {
        let a = VisitorHasher(k0: 1, k1: 2)
        let b = VisitorHasher(k0: 1, k1: 3)
        let ids = (0..<100).map { "visitor-\($0)" }
        #expect(zip(ids.map(a.hash), ids.map(b.hash)).allSatisfy { $0 != $1 })
    }

    @Test func keyFromBytesNeedsSixteen() {
        #expect(VisitorHasher(key: Array(0..<15)) == nil)
        #expect(VisitorHasher(key: Array(0..<16)) == VisitorHasher(k0: 0x0706_0504_0302_0100, k1: 0x0f0e_0d0c_0b0a_0908))
    }

    @Test func noCollisionsAmongAMillionIds() {
        let hasher = VisitorHasher(k0: 0x1234, k1: 0x5678)
        var seen = Set<UInt64>(minimumCapacity: 1_000_000)
        for i in 0..<1_000_000 { seen.insert(hasher.hash("bench-run-\(i)")) }
        #expect(seen.count == 1_000_000)
    }
}

import Testing
import PropertyBased
@testable import HeadcountCore

@Suite struct BuildSmoke {
    @Test func builds() { #expect(Names.isValidRoom("a")) }
}

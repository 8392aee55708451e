import SwiftASN1

// The key structures espforge reads and writes, through swift-asn1 (strict DER; any malformed
// input throws, never traps): which algorithm and curve a PKCS#8, SubjectPublicKeyInfo or SEC1 key
// holds, and the SEC1 `EC PRIVATE KEY` espsecure writes.

enum KeyOID {
    static let rsaEncryption: ASN1ObjectIdentifier = [1, 2, 840, 113549, 1, 1, 1]
    static let rsaPSS: ASN1ObjectIdentifier = [1, 2, 840, 113549, 1, 1, 10]
    static let ecPublicKey: ASN1ObjectIdentifier = [1, 2, 840, 10045, 2, 1]
    static let p192: ASN1ObjectIdentifier = [1, 2, 840, 10045, 3, 1, 1]
    static let p256: ASN1ObjectIdentifier = [1, 2, 840, 10045, 3, 1, 7]
    static let p384: ASN1ObjectIdentifier = [1, 3, 132, 0, 34]
    static let ed25519: ASN1ObjectIdentifier = [1, 3, 101, 112]

    static func name(_ oid: ASN1ObjectIdentifier) -> String {
        switch oid {
        case rsaEncryption, rsaPSS: return "RSA"
        case ecPublicKey: return "EC"
        case p192: return "EC P-192"
        case p256: return "EC P-256"
        case p384: return "EC P-384"
        case ed25519: return "Ed25519"
        default: return "OID \(oid)"
        }
    }
}

enum KeyStructure {
    /// AlgorithmIdentifier ::= SEQUENCE { algorithm OID, parameters ANY OPTIONAL }: the algorithm and,
    /// when the parameters are an OID (a named curve), that OID.
    static func algorithmIdentifier(_ node: ASN1Node) throws -> (algorithm: ASN1ObjectIdentifier, parameter: ASN1ObjectIdentifier?) {
        try DER.sequence(node, identifier: .sequence) { nodes in
            let algorithm = try ASN1ObjectIdentifier(derEncoded: &nodes)
            var parameter: ASN1ObjectIdentifier?
            if let p = nodes.next(), p.identifier == .objectIdentifier { parameter = try ASN1ObjectIdentifier(derEncoded: p) }
            while nodes.next() != nil {}
            return (algorithm, parameter)
        }
    }

    /// PrivateKeyInfo ::= SEQUENCE { version INTEGER, AlgorithmIdentifier, privateKey OCTET STRING, ... }.
    static func pkcs8Algorithm(_ der: [UInt8]) throws -> (algorithm: ASN1ObjectIdentifier, parameter: ASN1ObjectIdentifier?) {
        try DER.sequence(try DER.parse(der), identifier: .sequence) { nodes in
            _ = try Int(derEncoded: &nodes)
            guard let alg = nodes.next() else { throw ASN1Error.invalidASN1Object(reason: "no AlgorithmIdentifier") }
            let result = try algorithmIdentifier(alg)
            _ = try ASN1OctetString(derEncoded: &nodes)
            while nodes.next() != nil {}   // attributes, public key (PKCS#8 v2)
            return result
        }
    }

    /// SubjectPublicKeyInfo ::= SEQUENCE { AlgorithmIdentifier, subjectPublicKey BIT STRING }.
    static func spkiAlgorithm(_ der: [UInt8]) throws -> (algorithm: ASN1ObjectIdentifier, parameter: ASN1ObjectIdentifier?) {
        try DER.sequence(try DER.parse(der), identifier: .sequence) { nodes in
            guard let alg = nodes.next() else { throw ASN1Error.invalidASN1Object(reason: "no AlgorithmIdentifier") }
            let result = try algorithmIdentifier(alg)
            _ = try ASN1BitString(derEncoded: &nodes)
            return result
        }
    }

    /// ECPrivateKey ::= SEQUENCE { version INTEGER, privateKey OCTET STRING,
    ///   parameters [0] EXPLICIT ECParameters OPTIONAL, publicKey [1] EXPLICIT BIT STRING OPTIONAL } (SEC1):
    /// the scalar's length and the named curve, if the parameters name one.
    static func sec1(_ der: [UInt8]) throws -> (scalarLength: Int, curve: ASN1ObjectIdentifier?) {
        try DER.sequence(try DER.parse(der), identifier: .sequence) { nodes in
            _ = try Int(derEncoded: &nodes)
            let scalar = try ASN1OctetString(derEncoded: &nodes)
            let params = try DER.optionalExplicitlyTagged(&nodes, tagNumber: 0, tagClass: .contextSpecific) { $0 }
            let curve = try params.flatMap { $0.identifier == .objectIdentifier ? try ASN1ObjectIdentifier(derEncoded: $0) : nil }
            _ = try DER.optionalExplicitlyTagged(&nodes, tagNumber: 1, tagClass: .contextSpecific) { try ASN1BitString(derEncoded: $0) }
            return (scalar.bytes.count, curve)
        }
    }

    /// The SEC1 ECPrivateKey DER with the named curve and the public point, as OpenSSL's
    /// "traditional" EC key form (what espsecure writes).
    static func sec1DER(scalar: [UInt8], curve: ASN1ObjectIdentifier, point: [UInt8]) throws -> [UInt8] {
        var s = DER.Serializer()
        try s.appendConstructedNode(identifier: .sequence) { s in
            try s.serialize(1)
            try s.serialize(ASN1OctetString(contentBytes: scalar[...]))
            try s.serialize(explicitlyTaggedWithTagNumber: 0, tagClass: .contextSpecific) { try $0.serialize(curve) }
            try s.serialize(explicitlyTaggedWithTagNumber: 1, tagClass: .contextSpecific) {
                try $0.serialize(ASN1BitString(bytes: point[...]))
            }
        }
        return s.serializedBytes
    }
}

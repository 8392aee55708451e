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
        let info = try pkcs8(der)
        return (info.algorithm, info.parameter)
    }

    /// PrivateKeyInfo: the algorithm, its named curve (if any) and the privateKey octets (for EC keys a
    /// SEC 1 ECPrivateKey).
    static func pkcs8(_ der: [UInt8]) throws -> (algorithm: ASN1ObjectIdentifier, parameter: ASN1ObjectIdentifier?, privateKey: [UInt8]) {
        try DER.sequence(try DER.parse(der), identifier: .sequence) { nodes in
            _ = try Int(derEncoded: &nodes)
            guard let alg = nodes.next() else { throw ASN1Error.invalidASN1Object(reason: "no AlgorithmIdentifier") }
            let result = try algorithmIdentifier(alg)
            let key = try ASN1OctetString(derEncoded: &nodes)
            while nodes.next() != nil {}   // attributes, public key (PKCS#8 v2)
            return (result.algorithm, result.parameter, Array(key.bytes))
        }
    }

    /// SubjectPublicKeyInfo ::= SEQUENCE { AlgorithmIdentifier, subjectPublicKey BIT STRING }.
    static func spkiAlgorithm(_ der: [UInt8]) throws -> (algorithm: ASN1ObjectIdentifier, parameter: ASN1ObjectIdentifier?) {
        let info = try spki(der)
        return (info.algorithm, info.parameter)
    }

    /// SubjectPublicKeyInfo: the algorithm, its named curve (if any) and the key bits (EC: the point).
    static func spki(_ der: [UInt8]) throws -> (algorithm: ASN1ObjectIdentifier, parameter: ASN1ObjectIdentifier?, key: [UInt8]) {
        try DER.sequence(try DER.parse(der), identifier: .sequence) { nodes in
            guard let alg = nodes.next() else { throw ASN1Error.invalidASN1Object(reason: "no AlgorithmIdentifier") }
            let result = try algorithmIdentifier(alg)
            let bits = try ASN1BitString(derEncoded: &nodes)
            return (result.algorithm, result.parameter, Array(bits.bytes))
        }
    }

    /// SubjectPublicKeyInfo DER of an EC public key: { { id-ecPublicKey, curve }, BIT STRING point }.
    static func ecSPKIDER(curve: ASN1ObjectIdentifier, point: [UInt8]) throws -> [UInt8] {
        var s = DER.Serializer()
        try s.appendConstructedNode(identifier: .sequence) { s in
            try s.appendConstructedNode(identifier: .sequence) { s in
                try s.serialize(KeyOID.ecPublicKey)
                try s.serialize(curve)
            }
            try s.serialize(ASN1BitString(bytes: point[...]))
        }
        return s.serializedBytes
    }

    /// ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }: r and s as big-endian magnitudes
    /// (no sign byte). Negative integers are refused.
    static func ecdsaSignature(_ der: [UInt8]) throws -> (r: [UInt8], s: [UInt8]) {
        try DER.sequence(try DER.parse(der), identifier: .sequence) { nodes in
            let r = try unsignedInteger(nodes.next())
            let s = try unsignedInteger(nodes.next())
            guard nodes.next() == nil else { throw ASN1Error.invalidASN1Object(reason: "trailing fields in ECDSA signature") }
            return (r, s)
        }
    }

    private static func unsignedInteger(_ node: ASN1Node?) throws -> [UInt8] {
        guard let node, node.identifier == .integer, case .primitive(let bytes) = node.content, let first = bytes.first else {
            throw ASN1Error.unexpectedFieldType(.integer)
        }
        guard first & 0x80 == 0 else { throw ASN1Error.invalidASN1IntegerEncoding(reason: "negative ECDSA signature value") }
        // DER minimal encoding: a leading zero only before a byte with its high bit set.
        if first == 0, bytes.count > 1, bytes[bytes.startIndex + 1] & 0x80 == 0 {
            throw ASN1Error.invalidASN1IntegerEncoding(reason: "non-minimal INTEGER")
        }
        return Array(bytes.drop { $0 == 0 })
    }

    /// ECPrivateKey ::= SEQUENCE { version INTEGER, privateKey OCTET STRING,
    ///   parameters [0] EXPLICIT ECParameters OPTIONAL, publicKey [1] EXPLICIT BIT STRING OPTIONAL } (SEC1):
    /// the scalar, the named curve if the parameters name one, and the public point if present.
    static func sec1(_ der: [UInt8]) throws -> (scalar: [UInt8], curve: ASN1ObjectIdentifier?, point: [UInt8]?) {
        try DER.sequence(try DER.parse(der), identifier: .sequence) { nodes in
            _ = try Int(derEncoded: &nodes)
            let scalar = try ASN1OctetString(derEncoded: &nodes)
            let params = try DER.optionalExplicitlyTagged(&nodes, tagNumber: 0, tagClass: .contextSpecific) { $0 }
            let curve = try params.flatMap { $0.identifier == .objectIdentifier ? try ASN1ObjectIdentifier(derEncoded: $0) : nil }
            let point = try DER.optionalExplicitlyTagged(&nodes, tagNumber: 1, tagClass: .contextSpecific) { try ASN1BitString(derEncoded: $0) }
            return (Array(scalar.bytes), curve, point.map { Array($0.bytes) })
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

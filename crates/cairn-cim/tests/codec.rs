//! Encoder golden tests (exact bytes for every element type the encoder writes) and
//! encode → decode round trips.

use cairn_cim::xml::decode::{decode_instance, decode_instance_path, decode_request};
use cairn_cim::xml::encode::{
    class_xml, escape, imethod_response, instance_xml, method_response, reference_xml,
    ClassOptions, IReturn, MethodReturn, OutParam,
};
use cairn_cim::{
    CimDateTime, CimError, CimStatus, CimType, ClassRepository, Instance, InstancePath, KeyValue,
    Property, Value,
};

const HEAD: &str = "<?xml version=\"1.0\" encoding=\"utf-8\" ?>\n<CIM CIMVERSION=\"2.0\" DTDVERSION=\"2.0\"><MESSAGE ID=\"7\" PROTOCOLVERSION=\"1.0\"><SIMPLERSP>";
const TAIL: &str = "</SIMPLERSP></MESSAGE></CIM>\n";
const NO_CLASS: ClassOptions = ClassOptions {
    include_qualifiers: false,
    include_class_origin: false,
};

fn text(b: Vec<u8>) -> String {
    String::from_utf8(b).expect("UTF-8")
}

fn pool() -> InstancePath {
    InstancePath::new("Cairn_StoragePool")
        .in_namespace("root/cairn")
        .with_key("InstanceID", "P<1>")
}

/// A path as it comes back from the decoder: INSTANCEPATH always carries a host.
fn hosted_pool() -> InstancePath {
    let mut p = pool();
    p.host = Some("localhost".into());
    p
}

#[test]
fn golden_error() {
    let e = CimError::new(CimStatus::NotFound, "No instance \"x\" & <y>");
    let got = text(imethod_response("7", "GetInstance", &Err(e), NO_CLASS));
    assert_eq!(
        got,
        format!("{HEAD}<IMETHODRESPONSE NAME=\"GetInstance\"><ERROR CODE=\"6\" DESCRIPTION=\"No instance &quot;x&quot; &amp; &lt;y&gt;\"/></IMETHODRESPONSE>{TAIL}")
    );
    let got = text(method_response(
        "7",
        "createElementReplica",
        &Err(CimError::new(CimStatus::MethodNotFound, "m")),
    ));
    assert_eq!(got, format!("{HEAD}<METHODRESPONSE NAME=\"createElementReplica\"><ERROR CODE=\"17\" DESCRIPTION=\"m\"/></METHODRESPONSE>{TAIL}"));
}

#[test]
fn golden_instance_properties() {
    let embedded = Instance::new("CIM_Error").with("Message", Value::string("a<b"));
    let mut inst = Instance::new("Cairn_X")
        .with("S", Value::string("x & y"))
        .with("U", Value::Uint16(11))
        .with(
            "A",
            Value::Array(CimType::Uint16, vec![Value::Uint16(6), Value::Uint16(7)]),
        )
        .with("R", Value::Reference(pool()))
        .with("E", Value::Instance(Box::new(embedded)))
        .with("D", Value::DateTime(CimDateTime::interval_seconds(61)));
    inst.properties
        .push(Property::null("N", CimType::Boolean, false));
    inst.properties
        .push(Property::null("NA", CimType::String, true));
    inst.properties[3].reference_class = Some("CIM_StoragePool".into());
    inst.properties[1].class_origin = Some("CIM_Y".into());
    assert_eq!(
        instance_xml(&inst),
        concat!(
            "<INSTANCE CLASSNAME=\"Cairn_X\">",
            "<PROPERTY NAME=\"S\" TYPE=\"string\"><VALUE>x &amp; y</VALUE></PROPERTY>",
            "<PROPERTY NAME=\"U\" TYPE=\"uint16\" CLASSORIGIN=\"CIM_Y\"><VALUE>11</VALUE></PROPERTY>",
            "<PROPERTY.ARRAY NAME=\"A\" TYPE=\"uint16\"><VALUE.ARRAY><VALUE>6</VALUE><VALUE>7</VALUE></VALUE.ARRAY></PROPERTY.ARRAY>",
            "<PROPERTY.REFERENCE NAME=\"R\" REFERENCECLASS=\"CIM_StoragePool\"><VALUE.REFERENCE><LOCALINSTANCEPATH>",
            "<LOCALNAMESPACEPATH><NAMESPACE NAME=\"root\"/><NAMESPACE NAME=\"cairn\"/></LOCALNAMESPACEPATH>",
            "<INSTANCENAME CLASSNAME=\"Cairn_StoragePool\"><KEYBINDING NAME=\"InstanceID\"><KEYVALUE VALUETYPE=\"string\" TYPE=\"string\">P&lt;1&gt;</KEYVALUE></KEYBINDING></INSTANCENAME>",
            "</LOCALINSTANCEPATH></VALUE.REFERENCE></PROPERTY.REFERENCE>",
            "<PROPERTY NAME=\"E\" TYPE=\"string\" EmbeddedObject=\"instance\"><VALUE>&lt;INSTANCE CLASSNAME=&quot;CIM_Error&quot;&gt;&lt;PROPERTY NAME=&quot;Message&quot; TYPE=&quot;string&quot;&gt;&lt;VALUE&gt;a&amp;lt;b&lt;/VALUE&gt;&lt;/PROPERTY&gt;&lt;/INSTANCE&gt;</VALUE></PROPERTY>",
            "<PROPERTY NAME=\"D\" TYPE=\"datetime\"><VALUE>00000000000101.000000:000</VALUE></PROPERTY>",
            "<PROPERTY NAME=\"N\" TYPE=\"boolean\"></PROPERTY>",
            "<PROPERTY.ARRAY NAME=\"NA\" TYPE=\"string\"></PROPERTY.ARRAY>",
            "</INSTANCE>"
        )
    );
}

#[test]
fn golden_paths_and_key_types() {
    let p = InstancePath::new("C")
        .with_key_value("N", KeyValue::Numeric("5".into(), Some(CimType::Uint32)))
        .with_key_value("U", KeyValue::Numeric("6".into(), None))
        .with_key_value("B", KeyValue::Boolean(true))
        .with_key_value(
            "R",
            KeyValue::Reference(Box::new(InstancePath::new("D").with_key("K", "v"))),
        );
    assert_eq!(
        reference_xml(&p),
        concat!(
            "<INSTANCENAME CLASSNAME=\"C\">",
            "<KEYBINDING NAME=\"N\"><KEYVALUE VALUETYPE=\"numeric\" TYPE=\"uint32\">5</KEYVALUE></KEYBINDING>",
            "<KEYBINDING NAME=\"U\"><KEYVALUE VALUETYPE=\"numeric\">6</KEYVALUE></KEYBINDING>",
            "<KEYBINDING NAME=\"B\"><KEYVALUE VALUETYPE=\"boolean\" TYPE=\"boolean\">TRUE</KEYVALUE></KEYBINDING>",
            "<KEYBINDING NAME=\"R\"><VALUE.REFERENCE><INSTANCENAME CLASSNAME=\"D\"><KEYBINDING NAME=\"K\"><KEYVALUE VALUETYPE=\"string\" TYPE=\"string\">v</KEYVALUE></KEYBINDING></INSTANCENAME></VALUE.REFERENCE></KEYBINDING>",
            "</INSTANCENAME>"
        )
    );
    let mut hosted = pool();
    hosted.host = Some("array.example.com".into());
    assert!(reference_xml(&hosted)
        .starts_with("<INSTANCEPATH><NAMESPACEPATH><HOST>array.example.com</HOST>"));
    // A namespace without a host is a LOCALINSTANCEPATH: no host is made up for it.
    assert_eq!(
        reference_xml(&pool()),
        concat!(
            "<LOCALINSTANCEPATH><LOCALNAMESPACEPATH><NAMESPACE NAME=\"root\"/><NAMESPACE NAME=\"cairn\"/></LOCALNAMESPACEPATH>",
            "<INSTANCENAME CLASSNAME=\"Cairn_StoragePool\"><KEYBINDING NAME=\"InstanceID\"><KEYVALUE VALUETYPE=\"string\" TYPE=\"string\">P&lt;1&gt;</KEYVALUE></KEYBINDING></INSTANCENAME>",
            "</LOCALINSTANCEPATH>"
        )
    );
}

#[test]
fn golden_intrinsic_results() {
    let inst = Instance::new("C").with("K", Value::string("v")).with_path(
        InstancePath::new("C")
            .in_namespace("interop")
            .with_key("K", "v"),
    );
    let name = "<INSTANCENAME CLASSNAME=\"C\"><KEYBINDING NAME=\"K\"><KEYVALUE VALUETYPE=\"string\" TYPE=\"string\">v</KEYVALUE></KEYBINDING></INSTANCENAME>";
    let path = format!("<INSTANCEPATH><NAMESPACEPATH><HOST>localhost</HOST><LOCALNAMESPACEPATH><NAMESPACE NAME=\"interop\"/></LOCALNAMESPACEPATH></NAMESPACEPATH>{name}</INSTANCEPATH>");
    let body = "<INSTANCE CLASSNAME=\"C\"><PROPERTY NAME=\"K\" TYPE=\"string\"><VALUE>v</VALUE></PROPERTY></INSTANCE>";
    let wrap = |m: &str, r: IReturn| text(imethod_response("7", m, &Ok(r), NO_CLASS));
    let expect = |m: &str, inner: String| {
        format!("{HEAD}<IMETHODRESPONSE NAME=\"{m}\">{inner}</IMETHODRESPONSE>{TAIL}")
    };
    let p = inst.path.clone().expect("path");
    assert_eq!(
        wrap("GetInstance", IReturn::Instance(inst.clone())),
        expect(
            "GetInstance",
            format!("<IRETURNVALUE>{body}</IRETURNVALUE>")
        )
    );
    assert_eq!(
        wrap("EnumerateInstances", IReturn::NamedInstances(vec![inst.clone()])),
        expect("EnumerateInstances", format!("<IRETURNVALUE><VALUE.NAMEDINSTANCE>{name}{body}</VALUE.NAMEDINSTANCE></IRETURNVALUE>"))
    );
    assert_eq!(
        wrap(
            "EnumerateInstanceNames",
            IReturn::InstanceNames(vec![p.clone()])
        ),
        expect(
            "EnumerateInstanceNames",
            format!("<IRETURNVALUE>{name}</IRETURNVALUE>")
        )
    );
    assert_eq!(
        wrap("Associators", IReturn::ObjectsWithPath(vec![inst.clone()])),
        expect("Associators", format!("<IRETURNVALUE><VALUE.OBJECTWITHPATH>{path}{body}</VALUE.OBJECTWITHPATH></IRETURNVALUE>"))
    );
    assert_eq!(
        wrap("ReferenceNames", IReturn::ObjectPaths(vec![p.clone()])),
        expect(
            "ReferenceNames",
            format!("<IRETURNVALUE><OBJECTPATH>{path}</OBJECTPATH></IRETURNVALUE>")
        )
    );
    assert_eq!(
        wrap(
            "EnumerateClassNames",
            IReturn::ClassNames(vec!["A".into(), "B".into()])
        ),
        expect(
            "EnumerateClassNames",
            "<IRETURNVALUE><CLASSNAME NAME=\"A\"/><CLASSNAME NAME=\"B\"/></IRETURNVALUE>".into()
        )
    );
    assert_eq!(
        wrap("DeleteInstance", IReturn::Nothing),
        expect("DeleteInstance", String::new())
    );
    assert_eq!(
        wrap("OpenEnumerateInstances", IReturn::PulledInstances { instances: vec![inst], end_of_sequence: false, context: Some("c&1".into()) }),
        expect(
            "OpenEnumerateInstances",
            format!("<IRETURNVALUE><VALUE.INSTANCEWITHPATH>{path}{body}</VALUE.INSTANCEWITHPATH></IRETURNVALUE><PARAMVALUE NAME=\"EndOfSequence\" PARAMTYPE=\"boolean\"><VALUE>FALSE</VALUE></PARAMVALUE><PARAMVALUE NAME=\"EnumerationContext\" PARAMTYPE=\"string\"><VALUE>c&amp;1</VALUE></PARAMVALUE>")
        )
    );
    assert_eq!(
        wrap("PullInstancePaths", IReturn::PulledPaths { paths: vec![p], end_of_sequence: true, context: None }),
        expect(
            "PullInstancePaths",
            format!("<IRETURNVALUE>{path}</IRETURNVALUE><PARAMVALUE NAME=\"EndOfSequence\" PARAMTYPE=\"boolean\"><VALUE>TRUE</VALUE></PARAMVALUE><PARAMVALUE NAME=\"EnumerationContext\" PARAMTYPE=\"string\"></PARAMVALUE>")
        )
    );
}

#[test]
fn golden_method_response() {
    let err = Instance::new("CIM_Error").with("ErrorType", Value::Uint16(4));
    let r = MethodReturn {
        return_value: Some(Value::Uint32(4096)),
        return_type: CimType::Uint32,
        out_params: vec![
            OutParam {
                name: "Job".into(),
                ty: CimType::Reference,
                is_array: false,
                value: Some(Value::Reference(pool())),
            },
            OutParam {
                name: "Error".into(),
                ty: CimType::Instance,
                is_array: false,
                value: Some(Value::Instance(Box::new(err))),
            },
            OutParam {
                name: "Sizes".into(),
                ty: CimType::Uint64,
                is_array: true,
                value: Some(Value::Array(CimType::Uint64, vec![Value::Uint64(1)])),
            },
            OutParam {
                name: "Nothing".into(),
                ty: CimType::String,
                is_array: false,
                value: None,
            },
        ],
    };
    let got = text(method_response("7", "GetError", &Ok(r)));
    let path = reference_xml(&pool());
    assert_eq!(
        got,
        format!(
            "{HEAD}<METHODRESPONSE NAME=\"GetError\"><RETURNVALUE PARAMTYPE=\"uint32\"><VALUE>4096</VALUE></RETURNVALUE>\
<PARAMVALUE NAME=\"Job\" PARAMTYPE=\"reference\"><VALUE.REFERENCE>{path}</VALUE.REFERENCE></PARAMVALUE>\
<PARAMVALUE NAME=\"Error\" PARAMTYPE=\"string\" EmbeddedObject=\"instance\"><VALUE>&lt;INSTANCE CLASSNAME=&quot;CIM_Error&quot;&gt;&lt;PROPERTY NAME=&quot;ErrorType&quot; TYPE=&quot;uint16&quot;&gt;&lt;VALUE&gt;4&lt;/VALUE&gt;&lt;/PROPERTY&gt;&lt;/INSTANCE&gt;</VALUE></PARAMVALUE>\
<PARAMVALUE NAME=\"Sizes\" PARAMTYPE=\"uint64\"><VALUE.ARRAY><VALUE>1</VALUE></VALUE.ARRAY></PARAMVALUE>\
<PARAMVALUE NAME=\"Nothing\" PARAMTYPE=\"string\"></PARAMVALUE>\
</METHODRESPONSE>{TAIL}"
        )
    );
}

#[test]
fn golden_class_with_qualifiers() {
    let json = r#"{"classes":[{"n":"X_Base","q":[{"n":"Abstract","t":"boolean","v":true,"s":false}],"ps":[]},
        {"n":"X_Thing","sc":"X_Base","q":[{"n":"Description","t":"string","v":"A <thing>","l":true}],
         "ps":[{"n":"Id","t":"string","co":"X_Thing","q":[{"n":"Key","t":"boolean","v":true,"o":false}]},
               {"n":"States","t":"uint16","a":true,"co":"X_Base","p":true,"q":[{"n":"ValueMap","t":"string","v":["2","3"],"p":true}]},
               {"n":"Peer","t":"reference","rc":"X_Base","co":"X_Thing"},
               {"n":"Level","t":"uint8","co":"X_Thing","d":3}],
         "ms":[{"n":"Go","t":"uint32","co":"X_Thing","ps":[{"n":"Speed","t":"uint16","q":[{"n":"In","t":"boolean","v":true}]},
               {"n":"Targets","t":"reference","a":true,"rc":"X_Base"},{"n":"Names","t":"string","a":true}]}]}]}"#;
    let repo = ClassRepository::from_json(json).expect("repository");
    let c = repo.class("x_thing").expect("class");
    assert_eq!(
        class_xml(c, ClassOptions { include_qualifiers: true, include_class_origin: true }),
        concat!(
            "<CLASS NAME=\"X_Thing\" SUPERCLASS=\"X_Base\">",
            "<QUALIFIER NAME=\"Description\" TYPE=\"string\" TRANSLATABLE=\"true\"><VALUE>A &lt;thing&gt;</VALUE></QUALIFIER>",
            "<PROPERTY NAME=\"Id\" TYPE=\"string\" CLASSORIGIN=\"X_Thing\"><QUALIFIER NAME=\"Key\" TYPE=\"boolean\" OVERRIDABLE=\"false\"><VALUE>TRUE</VALUE></QUALIFIER></PROPERTY>",
            "<PROPERTY.ARRAY NAME=\"States\" TYPE=\"uint16\" CLASSORIGIN=\"X_Base\" PROPAGATED=\"true\"><QUALIFIER NAME=\"ValueMap\" TYPE=\"string\" PROPAGATED=\"true\"><VALUE.ARRAY><VALUE>2</VALUE><VALUE>3</VALUE></VALUE.ARRAY></QUALIFIER></PROPERTY.ARRAY>",
            "<PROPERTY.REFERENCE NAME=\"Peer\" REFERENCECLASS=\"X_Base\" CLASSORIGIN=\"X_Thing\"></PROPERTY.REFERENCE>",
            "<PROPERTY NAME=\"Level\" TYPE=\"uint8\" CLASSORIGIN=\"X_Thing\"><VALUE>3</VALUE></PROPERTY>",
            "<METHOD NAME=\"Go\" TYPE=\"uint32\" CLASSORIGIN=\"X_Thing\">",
            "<PARAMETER NAME=\"Speed\" TYPE=\"uint16\"><QUALIFIER NAME=\"In\" TYPE=\"boolean\"><VALUE>TRUE</VALUE></QUALIFIER></PARAMETER>",
            "<PARAMETER.REFARRAY NAME=\"Targets\" REFERENCECLASS=\"X_Base\"></PARAMETER.REFARRAY>",
            "<PARAMETER.ARRAY NAME=\"Names\" TYPE=\"string\"></PARAMETER.ARRAY>",
            "</METHOD></CLASS>"
        )
    );
    let base = class_xml(repo.class("X_Base").expect("base"), NO_CLASS);
    assert_eq!(base, "<CLASS NAME=\"X_Base\"></CLASS>");
    assert!(
        ClassRepository::from_json(r#"{"classes":[{"n":"A","sc":"Missing","ps":[]}]}"#).is_err()
    );
    let nameless = r#"{"classes":[{"n":"A","ps":[{"n":"","t":"string","co":"A"}]}]}"#;
    assert!(ClassRepository::from_json(nameless).is_err());
}

#[test]
fn escape_handles_markup_quotes_and_controls() {
    assert_eq!(
        escape("<a href=\"x\">'&'</a>\u{1}\n"),
        "&lt;a href=&quot;x&quot;&gt;&apos;&amp;&apos;&lt;/a&gt;&#1;\n"
    );
}

#[test]
fn instance_round_trip_every_type() {
    let inner = Instance::new("CIM_StorageSetting").with("InstanceID", Value::string("S&<>\"'"));
    let inst = Instance::new("Cairn_All")
        .with("B", Value::Boolean(false))
        .with("U8", Value::Uint8(255))
        .with("S8", Value::Sint8(-128))
        .with("U16", Value::Uint16(65535))
        .with("S16", Value::Sint16(-32768))
        .with("U32", Value::Uint32(u32::MAX))
        .with("S32", Value::Sint32(i32::MIN))
        .with("U64", Value::Uint64(u64::MAX))
        .with("S64", Value::Sint64(i64::MIN))
        .with("R32", Value::Real32(1.5))
        .with("R64", Value::Real64(-2.5e-300))
        .with("C16", Value::Char16('☃'))
        .with("Str", Value::string("Zürich ☃ 😀 <&> \"q\" 'a'\ttab"))
        .with("Empty", Value::string(""))
        .with(
            "DT",
            Value::DateTime(CimDateTime::parse("20261125134507.123456+060").expect("datetime")),
        )
        .with("Ref", Value::Reference(hosted_pool()))
        .with("Emb", Value::Instance(Box::new(inner)))
        .with(
            "Arr",
            Value::Array(
                CimType::String,
                vec![Value::string("a"), Value::string(""), Value::string("été")],
            ),
        )
        .with(
            "Bools",
            Value::Array(CimType::Boolean, vec![Value::Boolean(true)]),
        );
    let back = decode_instance(&instance_xml(&inst)).expect("decode");
    assert_eq!(back, inst);
}

#[test]
fn path_round_trips() {
    let mut p = pool();
    p.host = Some("h".into());
    p.keys.push(cairn_cim::KeyBinding {
        name: "N".into(),
        value: KeyValue::Numeric("-5".into(), Some(CimType::Sint32)),
    });
    p.keys.push(cairn_cim::KeyBinding {
        name: "R".into(),
        value: KeyValue::Reference(Box::new(pool())),
    });
    let back = decode_instance_path(&reference_xml(&p)).expect("decode");
    assert_eq!(back, p);
    assert!(back.same_object(&p));
    let local = InstancePath::new("C").with_key("K", "v");
    assert_eq!(
        decode_instance_path(&reference_xml(&local)).expect("decode"),
        local
    );
}

#[test]
fn request_round_trip_through_decoder() {
    // A METHODCALL built from encoded parts decodes to the same values.
    let target = hosted_pool();
    let body = format!(
        "<?xml version=\"1.0\"?><CIM CIMVERSION=\"2.0\" DTDVERSION=\"2.0\"><MESSAGE ID=\"9\" PROTOCOLVERSION=\"1.0\"><SIMPLEREQ><METHODCALL NAME=\"M\"><LOCALINSTANCEPATH><LOCALNAMESPACEPATH><NAMESPACE NAME=\"root\"/><NAMESPACE NAME=\"cairn\"/></LOCALNAMESPACEPATH>{}</LOCALINSTANCEPATH><PARAMVALUE NAME=\"P\" PARAMTYPE=\"reference\"><VALUE.REFERENCE>{}</VALUE.REFERENCE></PARAMVALUE></METHODCALL></SIMPLEREQ></MESSAGE></CIM>",
        reference_xml(&InstancePath::new("Cairn_StoragePool").with_key("InstanceID", "P<1>")),
        reference_xml(&target)
    );
    let r = decode_request(body.as_bytes()).expect("decode");
    let cairn_cim::request::Call::Extrinsic(c) = r.call else {
        panic!("extrinsic")
    };
    assert_eq!(c.target, cairn_cim::request::MethodTarget::Instance(pool()));
    assert_eq!(
        c.params[0].value,
        cairn_cim::request::RawValue::Reference(target)
    );
}

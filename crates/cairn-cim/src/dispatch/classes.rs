//! GetClass, EnumerateClasses, EnumerateClassNames over the class repository.
//!
//! Invariants: LocalOnly drops propagated properties, methods and qualifiers (also the inherited
//! qualifiers of overriding properties and methods); DeepInheritance
//! defaults to FALSE for classes (immediate subclasses only); the same classes are served in every
//! namespace.

use super::params::{listed, Params};
use super::Core;
use crate::class::Class;
use crate::error::CimError;
use crate::xml::encode::{ClassOptions, IReturn};

impl Core {
    pub(super) fn get_class(&self, p: &Params<'_>) -> Result<(IReturn, ClassOptions), CimError> {
        let name = p
            .class_name("ClassName")?
            .ok_or_else(|| CimError::invalid_parameter("ClassName is required"))?;
        let local_only = p.bool("LocalOnly", true)?;
        let opts = class_options(p)?;
        let plist = p.property_list()?;
        let class = self
            .repo
            .class(name)
            .ok_or_else(|| CimError::new(crate::CimStatus::NotFound, format!("No class {name}")))?;
        Ok((
            IReturn::Class(Box::new(view(class, local_only, plist.as_deref()))),
            opts,
        ))
    }

    pub(super) fn enumerate_classes(
        &self,
        p: &Params<'_>,
    ) -> Result<(IReturn, ClassOptions), CimError> {
        let name = p.class_name("ClassName")?;
        let deep = p.bool("DeepInheritance", false)?;
        let local_only = p.bool("LocalOnly", true)?;
        let opts = class_options(p)?;
        let classes = self
            .repo
            .subclasses(name, deep)
            .map_err(|n| CimError::invalid_class(&n))?;
        Ok((
            IReturn::Classes(
                classes
                    .into_iter()
                    .map(|c| view(c, local_only, None))
                    .collect(),
            ),
            opts,
        ))
    }

    pub(super) fn enumerate_class_names(&self, p: &Params<'_>) -> Result<IReturn, CimError> {
        let name = p.class_name("ClassName")?;
        let deep = p.bool("DeepInheritance", false)?;
        let classes = self
            .repo
            .subclasses(name, deep)
            .map_err(|n| CimError::invalid_class(&n))?;
        Ok(IReturn::ClassNames(
            classes.into_iter().map(|c| c.name.clone()).collect(),
        ))
    }
}

fn class_options(p: &Params<'_>) -> Result<ClassOptions, CimError> {
    Ok(ClassOptions {
        include_qualifiers: p.bool("IncludeQualifiers", true)?,
        include_class_origin: p.bool("IncludeClassOrigin", false)?,
    })
}

/// The class as a client asked to see it.
pub(super) fn view(c: &Class, local_only: bool, plist: Option<&[String]>) -> Class {
    let mut out = c.clone();
    if local_only {
        // DSP0200: only elements (properties, methods, qualifiers) defined or overridden here.
        out.qualifiers.retain(|q| !q.propagated);
        out.properties.retain(|p| !p.propagated);
        out.methods.retain(|m| !m.propagated);
        for p in &mut out.properties {
            p.qualifiers.retain(|q| !q.propagated);
        }
        for m in &mut out.methods {
            m.qualifiers.retain(|q| !q.propagated);
        }
    }
    out.properties.retain(|p| listed(plist, &p.name));
    out
}

//! Independent copies of a module, the reference's `copy.deepcopy` of the
//! forward decoder that starts bicaptioning's backward one.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

/// A copy of `module` with the same values under new parameter ids, so it
/// trains on its own (`copy.deepcopy` in the reference). A plain `clone`
/// shares ids, which the optimiser would treat as one parameter, and clones
/// lazily initialised parameters without their values.
pub(crate) fn independent_copy<B: Backend, M: Module<B>>(module: &M) -> M {
    module.visit(&mut Materialise);
    module.clone().map(&mut NewParamIds)
}

/// Runs every lazy parameter's initialiser.
pub(crate) struct Materialise;

impl<B: Backend> ModuleVisitor<B> for Materialise {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let _ = param.val();
    }
}

/// Gives every parameter a new id and its own tensor. Reusing the tensor
/// would keep one autodiff leaf for both copies, so the first copy visited
/// would collect both copies' gradients and the second none.
struct NewParamIds;

impl<B: Backend> ModuleMapper<B> for NewParamIds {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (_, tensor, mapper) = param.consume();
        let mut own = Tensor::from_data(tensor.to_data(), &tensor.device());
        if tensor.is_require_grad() {
            own = own.require_grad();
        }
        Param::from_mapped_value(ParamId::new(), own, mapper)
    }
}

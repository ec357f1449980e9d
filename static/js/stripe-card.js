// Card entry with Stripe Elements. Loaded only on the card page, only with Stripe.
// The card goes from the browser to Stripe; our server never sees it.
document.addEventListener("DOMContentLoaded", function () {
  var form = document.getElementById("card-form");
  if (!form || typeof Stripe === "undefined") { return; }
  var stripe = Stripe(form.dataset.publishableKey);
  var card = stripe.elements().create("card");
  card.mount("#card-element");
  var errors = document.getElementById("card-errors");
  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    var button = form.querySelector("button");
    button.disabled = true;
    errors.textContent = "";
    var result = await stripe.confirmCardSetup(form.dataset.clientSecret, {
      payment_method: { card: card },
    });
    if (result.error) {
      errors.textContent = result.error.message || "Your card could not be saved.";
      button.disabled = false;
      return;
    }
    window.location.assign(form.dataset.returnUrl);
  });
});

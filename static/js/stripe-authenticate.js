// 3-D Secure for a payment that waits for the supporter: Stripe.js runs the bank's
// step, then the browser goes to our return page, which reads the payment's final
// state from Stripe (never from the browser) and records it once.
document.addEventListener("DOMContentLoaded", function () {
  var form = document.getElementById("authenticate-form");
  if (!form || typeof Stripe === "undefined") { return; }
  var stripe = Stripe(form.dataset.publishableKey);
  var errors = document.getElementById("authenticate-errors");
  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    var button = form.querySelector("button");
    button.disabled = true;
    errors.textContent = "";
    var secret = form.dataset.clientSecret;
    // Stripe.js runs a server-confirmed payment's next action with handleNextAction.
    // localstripe's stand-in lacks it; its confirmCardPayment plays the same step
    // (its 3-D Secure dialog) for a payment that requires action.
    var step = typeof stripe.handleNextAction === "function"
      ? stripe.handleNextAction({ clientSecret: secret })
      : stripe.confirmCardPayment(secret);
    try {
      await step;
    } catch (problem) {
      // The return page still reads what happened from Stripe.
    }
    window.location.assign(form.dataset.returnUrl);
  });
});
